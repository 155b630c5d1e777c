"""Turns a training checkpoint, or a bundle, into an inference bundle (see bundle.py).

The EMA copy of the parameters is exported when the run kept one (it restores
better than the raw weights); the model config comes from the checkpoint's own
record, so the training config file is not needed. From a bundle (e.g. the shipped
model), the parameters are copied as they are. `formats` adds graphs for other
runtimes: 'saved_model' (TensorFlow, jax2tf: saved_model.py) under BUNDLE/saved_model,
'onnx' (jax2onnx: onnx_export.py) under BUNDLE/onnx.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Callable, Sequence

from clarity_jax.inference import bundle
from clarity_jax.inference import onnx_export
from clarity_jax.inference import saved_model
from clarity_jax.train import checkpoints

FORMATS = ('saved_model', 'onnx')


def export(workdir: str | os.PathLike | None, output: str | os.PathLike,
           step: int | None = None, formats: Sequence[str] = (),
           max_file_bytes: int | None = None, source_bundle: str | os.PathLike | None = None,
           onnx_batch: int = 1, int8_calibration: Sequence[str] = ()) -> bundle.BundleInfo:
  """Writes the bundle of `workdir`'s checkpoint `step` (default: the latest), or of
  `source_bundle`'s parameters.

  `max_file_bytes` caps each parameter file, sharding the parameters when they do
  not fit one (see bundle.py); None: one params.safetensors. The SavedModel's
  variables are one file whatever the cap. `onnx_batch`: the ONNX graphs' batch;
  `int8_calibration`: clips of real footage to calibrate int8 ONNX graphs on.
  """
  unknown = sorted(set(formats) - set(FORMATS))
  if unknown:
    raise ValueError(f'export: unknown formats {unknown}; choose from {FORMATS}')
  if int8_calibration and 'onnx' not in formats:
    raise bundle.BundleError('--int8_calibration', 'quantizes the ONNX graphs: add '
                             '--format=onnx')
  if source_bundle is not None:
    _, params, info = bundle.load_params(source_bundle)
    spec, step, weights = info.model, info.step, info.weights
  else:
    params, config, step, weights = checkpoints.restore_params(workdir, step)
    spec = bundle.ModelSpec.from_config(config)
  writers: list[Callable[[Path, str], dict[str, Any]]] = []
  if 'saved_model' in formats:
    writers.append(saved_model.saved_model_extras(spec, params))
  if 'onnx' in formats:
    writers.append(onnx_export.onnx_extras(spec, params, step=step, weights=weights,
                                           batch=onnx_batch,
                                           int8_calibration=list(int8_calibration)))

  def extras(tmp: Path, params_sha256: str) -> dict[str, Any]:
    fields: dict[str, Any] = {}
    for write in writers:
      fields.update(write(tmp, params_sha256))
    return fields

  return bundle.save_bundle(output, spec, params, step=step, weights=weights,
                            extras=extras if writers else None,
                            max_file_bytes=max_file_bytes)
