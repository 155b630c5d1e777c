"""Turns a training checkpoint into an inference bundle.

  python -m clarity_jax.export --workdir=DIR | --bundle=BUNDLE --output=BUNDLE [--step=N]
      [--format=saved_model] [--format=onnx [--int8_calibration=CLIP,...]]
      [--max_file_mib=N] [--overwrite]

The work is inference/export.py (inference/saved_model.py and onnx_export.py for the
formats); this module reads the flags and prints what was written.
"""

import os

from absl import flags

from clarity_jax import errors
from clarity_jax.cli import common
from clarity_jax.inference import export

_WORKDIR = flags.DEFINE_string('workdir', None, 'Training workdir (holds checkpoints/).')
_BUNDLE = flags.DEFINE_string('bundle', None, 'Or a bundle to export again with other '
                              '--format graphs (e.g. the shipped model\'s folder).')
_OUTPUT = flags.DEFINE_string('output', None, 'Bundle folder to write.')
_STEP = flags.DEFINE_integer('step', None, 'Checkpoint step; default: the latest.')
_FORMAT = flags.DEFINE_multi_enum(
    'format', [], list(export.FORMATS), 'Also write a graph for another runtime, beside '
    'the parameters: saved_model (TensorFlow, jax2tf; any batch, h and w multiples of its '
    'size multiple) or onnx (jax2onnx, the extra ".[onnx]"; batch 1, the same sizes). '
    'Repeat for both.')
_MAX_FILE_MIB = flags.DEFINE_float(
    'max_file_mib', 0, 'Largest parameter file in MiB (2**20 bytes): parameters that do '
    'not fit one file are split over params-00001-of-0000N.safetensors, for channels '
    'that cap file sizes; 0: one params.safetensors.', lower_bound=0)
_OVERWRITE = flags.DEFINE_bool('overwrite', False, 'Replace an existing bundle at --output '
                               '(only a bundle: any other folder is refused).')
_INT8 = flags.DEFINE_list(
    'int8_calibration', [], 'With --format=onnx: also write int8 graphs (NNCF, the extra '
    '".[onnx]"), calibrated on these clips of real footage (videos or frame folders at '
    'the resolution the model restores to, e.g. training footage; not the clips quality '
    'is judged on).')
flags.mark_flags_as_required(['output'])
flags.mark_flags_as_mutual_exclusive(['workdir', 'bundle'], required=True)


@common.exit_on_error()
def main(argv: list[str]) -> None:
  common.start(argv, quiet=True)
  if os.path.exists(_OUTPUT.value) and (not os.path.isdir(_OUTPUT.value)
                                        or os.listdir(_OUTPUT.value)) and not _OVERWRITE.value:
    raise errors.PathError(_OUTPUT.value, 'already exists; choose a new --output or pass '
                           '--overwrite to replace an earlier bundle')
  mib = _MAX_FILE_MIB.value
  max_file_bytes = max(1, int(mib * 2**20)) if mib else None
  info = export.export(_WORKDIR.value, _OUTPUT.value, _STEP.value, _FORMAT.value,
                       max_file_bytes=max_file_bytes, source_bundle=_BUNDLE.value,
                       int8_calibration=_INT8.value)
  # For shards, the sha256 of their digests (bundle.py): as for one file, the
  # params_sha256 that evaluate's metrics.json records for these weights.
  shards = f', {len(info.params_files)} files' if info.sharded else ''
  print(f'{_OUTPUT.value}: {info.model.variant} x{info.model.scale} '
        f'K={info.model.num_neighbors}, step {info.step}, {info.weights} weights, '
        f'sha256 {info.params_sha256[:12]}{shards}', flush=True)
