"""Scores restorations against ground truth: metrics.json, results.md, pictures.

  python -m clarity_jax.evaluate --bundle=BUNDLE[,DEBLUR+SR,...] [--workdir=RUN[@STEP]] \\
      --lq=LQ_ROOT --gt=GT_ROOT --output=DIR [--protocol=basicsr|fmanet]

The work is clarity_jax/evaluation/evaluate.py; the protocol is docs/evaluation.md.
"""

from absl import flags

from clarity_jax.cli import common
from clarity_jax.cli import method_flags
from clarity_jax.evaluation import clips
from clarity_jax.evaluation import evaluate
from clarity_jax.evaluation import report

_METHODS = method_flags.define_method_flags()
_LQ = flags.DEFINE_string('lq', None, 'LQ_ROOT/<clip>/<frames> (or one clip folder).')
_GT = flags.DEFINE_string('gt', None, 'GT_ROOT/<clip>/<frames>, the same clips and frame '
                          'count.')
_OUTPUT = flags.DEFINE_string('output', None, 'Folder for metrics.json, results.md, '
                              'pictures/, frames/.')
_PROTOCOL = flags.DEFINE_enum('protocol', 'basicsr', sorted(clips.PROTOCOLS), 'basicsr: '
                              'all frames; fmanet: first and last frame of each clip '
                              'dropped.')
_SCALE = flags.DEFINE_integer('scale', None, 'Scale of the data; default: GT size // LQ '
                              'size.')
_MAX_FRAMES = flags.DEFINE_integer('max_frames', None, 'Keep only the first N frames of '
                                   'each clip (quick runs).', lower_bound=1)
_LPIPS_WEIGHTS = flags.DEFINE_string('lpips_weights', '', 'LPIPS weights (.safetensors / '
                                     '.npz, see clarity_jax.models.lpips.load_lpips); '
                                     'empty: LPIPS unavailable.')
_NUM_PICTURES = flags.DEFINE_integer('num_pictures', 4, 'Comparison pictures (one frame '
                                     'of as many clips).', lower_bound=0)
_SAVE_FRAMES = flags.DEFINE_bool('save_frames', True, 'Also write every scored output '
                                 'frame under OUTPUT/frames/<method>/<clip>/.')
_RESTORER = common.define_restorer_flags()
flags.mark_flags_as_required(['lq', 'gt', 'output'])


@common.exit_on_error()
def main(argv: list[str]) -> None:
  common.start(argv, quiet=True)
  r = _RESTORER
  bundles, workdirs, names = _METHODS.chosen()
  result = evaluate.run(
      lq=_LQ.value, gt=_GT.value, output=_OUTPUT.value, bundles=bundles,
      workdirs=workdirs, names=names, protocol=_PROTOCOL.value,
      scale=_SCALE.value, max_frames=_MAX_FRAMES.value, lpips_weights=_LPIPS_WEIGHTS.value,
      num_pictures=_NUM_PICTURES.value, save_frames=_SAVE_FRAMES.value, tile=r.tile.value,
      tile_overlap=r.tile_overlap.value, batch=r.batch.value, dtype=r.dtype.value,
      engine=r.engine.value, progress=r.progress.value)
  print(report.summary_table(result), end='')
  print(f'{_OUTPUT.value}: {result["protocol"]["num_frames_included"]} frames of '
        f'{result["protocol"]["num_clips"]} clips, protocol {_PROTOCOL.value}', flush=True)
