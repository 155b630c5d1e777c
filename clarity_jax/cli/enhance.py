"""Restores a video, a frame folder, clip folders or an image.

  python -m clarity_jax.enhance --input=PATH --output=PATH [--bundle=BUNDLE] \\
      [--max_frames=N] [--compare] [--uncertainty] [--tile=256] [--tile_overlap=16] [--batch=4] \\
      [--dtype=float32|bfloat16] [--engine=jax|onnxruntime|openvino] [--shard=I/N]

The work is inference/enhance.py (files in and out) and inference/restorer.py
(windows, tiles, batches); this module reads the flags and prints the summary.
Without --bundle the model that ships with the package restores
(inference/shipped.py).
"""

from absl import flags

from clarity_jax.cli import common
from clarity_jax.media import readers
from clarity_jax.media import video_writer
from clarity_jax.inference import enhance
from clarity_jax.inference import restorer
from clarity_jax.inference import shipped

_BUNDLE = flags.DEFINE_string('bundle', None, 'Inference bundle (clarity_jax.export); '
                              'default: the model shipped with the package.')
_INPUT = flags.DEFINE_string('input', None, 'Video file, image, frame folder, folder of '
                             'clip folders, or folder of videos (a folder of outputs).')
_OUTPUT = flags.DEFINE_string('output', None, 'Video file, image file or folder.')
_MAX_FRAMES = flags.DEFINE_integer('max_frames', None, 'Restore only the first N frames of '
                                   'each clip.', lower_bound=1)
_COMPARE = flags.DEFINE_bool('compare', False, 'Also write OUTPUT_compare: bicubic | '
                             'restored side by side.')
_UNCERTAINTY = flags.DEFINE_bool(
    'uncertainty', False, 'Also write OUTPUT_uncertainty: the predicted error of every '
    'pixel as a colour map with a legend (a model with the uncertainty head), and add it '
    'to --compare as a third column.')
_RESTORER = common.define_restorer_flags()
_CRF = flags.DEFINE_integer('crf', video_writer.DEFAULT_CRF, 'x264 quality of video '
                            'outputs (lower is better).', lower_bound=0, upper_bound=51)
_PRESET = flags.DEFINE_enum(
    'preset', video_writer.DEFAULT_PRESET, list(video_writer.X264_PRESETS),
    'x264 speed of video outputs: faster presets make larger files at the same --crf '
    '(its cost per frame: benchmark --what=output).')
_SHARD = flags.DEFINE_string(
    'shard', None, 'I/N: of a folder of videos, restore only shard I (0-based) of N, a '
    'split by file name that N hosts agree on (launch/enhance_archive.sbatch).')
_ENCODER_CACHE = flags.DEFINE_bool(
    'encoder_cache', True, 'A model that warps encoder features encodes each frame once '
    'and keeps the features of the frames of one batch of windows and the next; '
    '--noencoder_cache encodes every window anew (the same output, less memory on '
    'very large frames, more time).')
_OVERWRITE = flags.DEFINE_bool('overwrite', False, 'Replace an existing output (only once '
                               'the new one is complete).')
flags.mark_flags_as_required(['input', 'output'])


@common.exit_on_error()
def main(argv: list[str]) -> None:
  common.start(argv, quiet=True)
  videos = readers.list_videos(_INPUT.value)
  if _SHARD.value is not None:
    shard = enhance.parse_shard(_SHARD.value)
    if not videos:
      raise enhance.EnhanceError('--shard', f'{_INPUT.value} is not a folder of videos')
    total, videos = len(videos), enhance.shard_videos(videos, *shard)
  r = _RESTORER
  if r.dtype.value == 'int8':
    # validate measures it (docs/performance.md); it failed the 0.05 dB rule.
    raise enhance.EnhanceError('--dtype', 'int8 loses more than 0.05 dB on validate '
                               '(docs/performance.md, "Engines"); use float32, or bfloat16 '
                               'on --engine=openvino')
  path = _BUNDLE.value or shipped.bundle_path()
  engine, info = restorer.Restorer.from_bundle(
      path, r.dtype.value, uncertainty=_UNCERTAINTY.value, engine=r.engine.value,
      tile=r.tile.value,
      tile_overlap=r.tile_overlap.value, batch=r.batch.value,
      encoder_cache=_ENCODER_CACHE.value)
  print('model: ' + (f'{path} ({info.model.variant} x{info.model.scale}, step {info.step})'
                     if _BUNDLE.value else shipped.describe(info)), flush=True)
  options = dict(max_frames=_MAX_FRAMES.value, compare=_COMPARE.value,
                 overwrite=_OVERWRITE.value, crf=_CRF.value, preset=_PRESET.value,
                 progress=r.progress.value)
  if _SHARD.value is not None:
    print(f'{_INPUT.value}: shard {_SHARD.value.strip()}: {len(videos)} of {total} videos '
          f'-> {_OUTPUT.value}', flush=True)
  elif not videos:
    _report(enhance.enhance(engine, _INPUT.value, _OUTPUT.value, **options), info)
    return
  else:
    print(f'{_INPUT.value}: {len(videos)} videos -> {_OUTPUT.value}', flush=True)
  for video, summary in zip(videos, enhance.enhance_videos(engine, videos, _OUTPUT.value,
                                                           **options)):
    if summary is None:
      print(f'{video.name}: already restored, skipped', flush=True)
    else:
      _report(summary, info)


def _report(summary: enhance.Summary, info) -> None:
  print(f'{summary.output}: {summary.frames} frames {summary.input_size[1]}x'
        f'{summary.input_size[0]} -> {summary.output_size[1]}x{summary.output_size[0]} '
        f'({info.model.variant} x{info.model.scale}, {summary.fps:.2f} frames/s)'
        + (f'; side by side: {summary.compare}' if summary.compare else '')
        + (f'; uncertainty maps: {summary.uncertainty}' if summary.uncertainty else ''),
        flush=True)
