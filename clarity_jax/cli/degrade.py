"""Degrades a tree of sharp frame folders with eq. (1), to build evaluation sets.

  python -m clarity_jax.degrade --input=HR_ROOT --output=LQ_ROOT --scale=4 --seed=0

LQ_ROOT gets the same clip folders and file names with frames `scale` times
smaller, and LQ_ROOT/degradation.json records the exact per-frame parameters of
every clip, the seed, the scale and the versions involved: the same command
gives the same bytes. Each clip is one temporally coherent window (parameters
drift smoothly over the whole clip) and, unless --codec=none, goes through a
real H.264 encoder as a whole. Ranges come from --config (its `degradation`
part; default: the package's degradation model, the one training uses), e.g.
--config.degradation.noise_prob=0. --low_light and --rolling_shutter put those
real-camera effects (off by default) on every clip, with the config's ranges.
"""

from pathlib import Path

from absl import flags
from ml_collections import config_flags

from clarity_jax import errors
from clarity_jax.cli import common
from clarity_jax.tools import degrade

_INPUT = flags.DEFINE_string('input', None, 'HR_ROOT/<clip>/<frames>, or one clip folder.')
_OUTPUT = flags.DEFINE_string('output', None, 'LQ_ROOT: new, empty, or an earlier output.')
_SCALE = flags.DEFINE_integer('scale', 4, 'Downsampling factor: 1, 2 or 4.')
_SEED = flags.DEFINE_integer('seed', 0, 'Same seed, same input: identical output bytes.')
_CODEC = flags.DEFINE_enum('codec', 'libx264', ['libx264', 'none'],
                           'Video codec applied to each whole clip, or none.')
_LOW_LIGHT = flags.DEFINE_bool(
    'low_light', False, 'Every clip in low light: dark, gamma-lifted, Poisson-Gaussian '
    'sensor noise, banding, quantised (else --config.degradation.low_light_prob: 0).')
_ROLLING_SHUTTER = flags.DEFINE_bool(
    'rolling_shutter', False, 'Every clip through a rolling shutter, approximated by a '
    'row-wise blend of consecutive frames (else --config.degradation.rolling_shutter_prob: 0).')
# The default is tools/degrade.py read as a config file (its get_config()): the
# package's own degradation model, so no configs/ folder is needed.
_CONFIG = config_flags.DEFINE_config_file(
    'config', degrade.__file__,
    'Config file whose `degradation` field gives the ranges (default: the package\'s '
    'degradation model, clarity_jax/data/degradation_config.py).')
flags.mark_flags_as_required(['input', 'output'])


@common.exit_on_error()
def main(argv: list[str]) -> None:
  common.start(argv)
  if _SCALE.value not in (1, 2, 4):  # here, not a flag validator: its error ends on help
    raise errors.ConfigError(f'--scale: must be 1, 2 or 4, got {_SCALE.value}')
  cfg = degrade.with_codec(_CONFIG.value.degradation, _CODEC.value)
  cfg = degrade.with_camera_effects(cfg, _LOW_LIGHT.value, _ROLLING_SHUTTER.value)
  degrade.degrade_tree(Path(_INPUT.value), Path(_OUTPUT.value), _SCALE.value, _SEED.value, cfg)
