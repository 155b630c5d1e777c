"""Warm start (config.init_from): training begins from a bundle's or a workdir's
weights, with a fresh optimiser and the schedule from step 0.

Users fine-tune the shipped model on their own camera's footage this way, and the
shipped model keeps improving from itself. The weights must be the configured
network's exactly (variant, scale, K, ablation switches): anything else is a
one-line error naming the source, never a partial load. Once the run has a
checkpoint, resuming reads that and init_from is not read again.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import ml_collections

from clarity_jax import errors
from clarity_jax.inference import bundle as bundle_lib
from clarity_jax.train import checkpoints


# The uncertainty head's parameters (train/state.py's UNCERTAINTY_KEY).
_HEAD = 'uncertainty_head'


def _describe(spec: bundle_lib.ModelSpec) -> str:
  ablations = [name for name, on in (('no alignment', not spec.use_alignment),
                                     ('no attention', not spec.use_attention)) if on]
  return ' '.join([f'{spec.variant} x{spec.scale} K={spec.num_neighbors}', *ablations])


def load(config: ml_collections.ConfigDict) -> tuple[Any, str]:
  """(params as a nested dict, a description for the log) from config.init_from: a
  bundle folder (its weights) or a training workdir (its latest checkpoint's EMA
  weights when kept, as export would write them)."""
  path = Path(config.init_from)
  if (path / bundle_lib.INFO_FILE).is_file():
    _, params, info = bundle_lib.load_params(path)
    spec, step = info.model, info.step
  elif (path / 'checkpoints').is_dir():
    params, saved, step, _ = checkpoints.restore_params(path)
    spec = bundle_lib.ModelSpec.from_config(saved)
  elif path.exists():
    raise errors.PathError(path, f'config.init_from: neither a bundle (no '
                           f'{bundle_lib.INFO_FILE}) nor a training workdir (no checkpoints/)')
  else:
    raise errors.PathError(path, 'config.init_from: no such bundle or workdir')
  want = bundle_lib.ModelSpec.from_config(config)
  # The uncertainty head may differ: a restorer without one gets a fresh head (the
  # run's own initialisation, filled in by the train loop); one with a head it
  # does not want leaves it behind. So may the warp's place (pixels or encoder
  # features): the parameters are the same, and the encoder's convolutions commute
  # with a warp but for interpolation and borders (the shipped weights restore as
  # well either way: docs/performance.md).
  if dataclasses.replace(spec, uncertainty=want.uncertainty,
                         warp_features=want.warp_features) != want:
    raise errors.ConfigError(f'{path}: config.init_from holds a {_describe(spec)} model; '
                             f'the config trains {_describe(want)}')
  note = ''
  if spec.uncertainty and not want.uncertainty:
    params = {k: v for k, v in params.items() if k != _HEAD}
    note = ', its uncertainty head left out'
  elif want.uncertainty and not spec.uncertainty:
    note = ', a new uncertainty head'
  if spec.warp_features != want.warp_features:
    note += ', now warping ' + ('encoder features' if want.warp_features else 'pixels')
  return params, f'{path} (step {step}, {_describe(spec)}{note})'
