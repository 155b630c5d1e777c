"""Gain over bicubic on held-out real footage at three degradations, mild to heavy.

  python -m clarity_jax.validate --clips=HELD_OUT.mp4,CLIP_FRAMES/ \\
      [--bundle=BUNDLE,...] [--workdir=RUN[@STEP],...] [--output=DIR]

Prints one row per setting, method and clip: bicubic PSNR, the method's PSNR and
the gains in PSNR and SSIM. The protocol: clarity_jax/tools/validation.py and
docs/results.md. --output keeps validation.json, validation.md and evaluate's full
report per setting.
"""

import json
import os
from pathlib import Path

from absl import flags

from clarity_jax import files
from clarity_jax.cli import common
from clarity_jax.cli import method_flags
from clarity_jax.evaluation import methods as methods_lib
from clarity_jax.tools import validation

_CLIPS = flags.DEFINE_list('clips', None, 'Held-out clips: video files or folders of frames.')
_METHODS = method_flags.define_method_flags()
_SETTINGS = flags.DEFINE_list('settings', list(validation.SETTINGS), 'Settings to run.')
_SCALE = flags.DEFINE_enum('scale', '4', ['2', '4'], 'Scale of the degraded sets.')
_FRAMES = flags.DEFINE_integer('frames', 24, 'Frames per clip (the first N).', lower_bound=3)
_DOWNSCALE = flags.DEFINE_integer('downscale', 2, 'Area-downscale the clips by this factor '
                                  'to make the ground truth.', lower_bound=1)
_SEED = flags.DEFINE_integer('seed', 0, 'Degradation seed (setting i uses seed + i).')
_CACHE = flags.DEFINE_string('cache', os.path.join(files.user_cache_dir(), 'validation'),
                             'Where the degraded sets are kept between runs.')
_OUTPUT = flags.DEFINE_string('output', '', 'Optional folder for the tables and reports.')
_RESTORER = common.define_restorer_flags()
flags.mark_flags_as_required(['clips'])


@common.exit_on_error()
def main(argv: list[str]) -> None:
  common.start(argv, quiet=True)
  scale = int(_SCALE.value)
  r = _RESTORER
  # Loaded before the sets are made: a bad --bundle or --workdir fails at once.
  methods = methods_lib.load_methods(_METHODS.specs(), scale, dtype=r.dtype.value,
                                     tile=r.tile.value, tile_overlap=r.tile_overlap.value,
                                     batch=r.batch.value, engine=r.engine.value)
  sets = validation.prepare(_CLIPS.value, _CACHE.value, scale=scale,
                            num_frames=_FRAMES.value, downscale=_DOWNSCALE.value,
                            seed=_SEED.value, settings=_SETTINGS.value)
  table = validation.validate(methods, sets, scale=scale, settings=_SETTINGS.value,
                              output=_OUTPUT.value or None, progress=r.progress.value)
  text = validation.markdown(table)
  if _OUTPUT.value:
    out = Path(_OUTPUT.value)
    files.write_text(out / 'validation.json', json.dumps(table, indent=1) + '\n')
    files.write_text(out / 'validation.md', text)
  print(text, end='', flush=True)
