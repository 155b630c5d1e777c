"""Turns a training checkpoint into an inference bundle (see bundle.py).

The EMA copy of the parameters is exported when the run kept one (it restores
better than the raw weights); the model config comes from the checkpoint's own
record, so the training config file is not needed. `saved_model` adds a
TensorFlow SavedModel (jax2tf, saved_model.py) under BUNDLE/saved_model.
"""

from __future__ import annotations

import os

from clarity_jax.inference import bundle
from clarity_jax.inference import saved_model as saved_model_lib
from clarity_jax.train import checkpoints


def export(workdir: str | os.PathLike, output: str | os.PathLike, step: int | None = None,
           saved_model: bool = False, max_file_bytes: int | None = None
           ) -> bundle.BundleInfo:
  """Writes the bundle of `workdir`'s checkpoint `step` (default: the latest).

  `max_file_bytes` caps each parameter file, sharding the parameters when they do
  not fit one (see bundle.py); None: one params.safetensors. The SavedModel's
  variables are one file whatever the cap.
  """
  params, config, step, weights = checkpoints.restore_params(workdir, step)
  spec = bundle.ModelSpec.from_config(config)
  extras = saved_model_lib.saved_model_extras(spec, params) if saved_model else None
  return bundle.save_bundle(output, spec, params, step=step, weights=weights, extras=extras,
                            max_file_bytes=max_file_bytes)
