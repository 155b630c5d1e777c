"""Turns a training checkpoint into an inference bundle.

  python -m clarity_jax.export --workdir=DIR --output=BUNDLE [--step=N] [--saved_model]

The work is inference/export.py (and inference/saved_model.py for --saved_model);
this module reads the flags and prints what was written.
"""

from absl import flags

from clarity_jax.cli import common
from clarity_jax.inference import export

_WORKDIR = flags.DEFINE_string('workdir', None, 'Training workdir (holds checkpoints/).')
_OUTPUT = flags.DEFINE_string('output', None, 'Bundle folder to write.')
_STEP = flags.DEFINE_integer('step', None, 'Checkpoint step; default: the latest.')
_SAVED_MODEL = flags.DEFINE_bool(
    'saved_model', False, 'Also write a TensorFlow SavedModel (jax2tf) taking any batch and '
    'any h, w that are multiples of its size multiple.')
flags.mark_flags_as_required(['workdir', 'output'])


@common.exit_on_error()
def main(argv: list[str]) -> None:
  common.start(argv, quiet=True)
  info = export.export(_WORKDIR.value, _OUTPUT.value, _STEP.value, _SAVED_MODEL.value)
  print(f'{_OUTPUT.value}: {info.model.variant} x{info.model.scale} '
        f'K={info.model.num_neighbors}, step {info.step}, {info.weights} weights, '
        f'sha256 {info.params_sha256[:12]}', flush=True)
