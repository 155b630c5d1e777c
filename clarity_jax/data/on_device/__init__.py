"""Eq. (1) on the device: what an accelerator host runs so that its CPU only reads,
crops and draws numbers (config.degradation.where='device').

train/feed.py calls this package and nothing behind it. The modules mirror the NumPy
reference one to one (degradations, camera_effects, synthetic, codecs; jpeg is
libjpeg's lossy steps), and tests/data/on_device/ holds each against it. x264 has
no device version: the codec's windows cross to the host as yuv420p planes
(window_planes) and come back through window_rgb.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import ml_collections
import numpy as np

from clarity_jax.data.synthetic import SyntheticSource, load_photos
from clarity_jax.data.on_device import degradations
from clarity_jax.data.on_device import synthetic as camera
from clarity_jax.data.on_device.codecs import window_planes, window_rgb

__all__ = ['camera_photos', 'degrade', 'render', 'training_pairs', 'window_planes',
           'window_rgb']


def camera_photos(config: ml_collections.ConfigDict) -> tuple[np.ndarray, np.ndarray] | None:
  """The photo stack that the device renders the synthetic camera's windows from
  (camera.photo_stack of the training photographs, in the source's order), or None
  when the host supplies HR windows (any source but the synthetic camera)."""
  if config.data.source != 'synthetic':
    return None
  return camera.photo_stack(list(load_photos('train').values()))


def render(config: ml_collections.ConfigDict, batch: Mapping[str, Any],
           photos: tuple[Any, Any]) -> dict[str, Any]:
  """The synthetic camera's device batch (its 'cam_*' arrays) -> the same batch with
  its frames instead, 'cam_frames' [B, F, H, W, 3], rendered from `photos`
  (camera_photos, on the device). degrade takes it from there. Inside jit.

  Its own program, not fused with degrade, and the frames are its only output:
  XLA:CPU ran the two fused, or a slice of the frames leaving the program, slower
  (docs/performance.md).
  """
  cam = {key: batch[f'cam_{key}'] for key in camera.ARRAY_KEYS}
  out = {key: v for key, v in batch.items() if not key.startswith('cam_')}
  out['cam_frames'] = camera.render(*photos, cam, config.scale * config.data.crop_size,
                                    SyntheticSource.edge_px)
  return out


def _camera_windows(config: ml_collections.ConfigDict, batch: Mapping[str, Any]
                    ) -> dict[str, Any]:
  """render's batch -> HR windows 'hr_window' [B, T', H, W, 3] and targets 'hr'
  (and 'hr_next'), as the host's examples carry them on other sources."""
  k, temporal = config.num_neighbors, config.loss.temporal_weight > 0
  frames = 2 * k + 1 + int(temporal)
  rendered = batch['cam_frames']
  # The global shutter's frames, rendered apart when a rolling shutter may read rows late.
  shown = rendered[:, frames:] if rendered.shape[1] > frames else rendered[:, k:k + 2]
  out = {key: v for key, v in batch.items() if key != 'cam_frames'}
  out.update(hr_window=rendered[:, :frames], hr=shown[:, 0])
  if temporal:
    out['hr_next'] = shown[:, 1]
  return out


def degrade(config: ml_collections.ConfigDict, batch: Mapping[str, Any]
            ) -> tuple[dict[str, Any], Any]:
  """A device batch with HR windows, or the camera's frames (render) -> (targets
  {'hr'[, 'hr_next']}, windows [B, T', H/s, W/s, 3] degraded by eq. (1) but the
  video codec), its noise from (config.seed, 'index'). Inside jit."""
  if 'cam_frames' in batch:
    batch = _camera_windows(config, batch)
  targets = {key: batch[key] for key in ('hr', 'hr_next') if key in batch}
  arrays = {key[len('deg_'):]: v for key, v in batch.items() if key.startswith('deg_')}
  keys = degradations.example_keys(config.seed, batch['index'])
  return targets, degradations.degrade(batch['hr_window'], arrays, keys, config.scale)


def training_pairs(targets: Mapping[str, Any], windows: Any, num_neighbors: int
                   ) -> dict[str, Any]:
  """Degraded windows [B, T', ...] and their targets -> what the model trains on:
  {'lq', 'hr'} (+ {'lq_next', 'hr_next'}, the window one frame later)."""
  t = 2 * num_neighbors + 1
  out = {'lq': windows[:, :t], 'hr': targets['hr']}
  if 'hr_next' in targets:
    out['lq_next'], out['hr_next'] = windows[:, 1:t + 1], targets['hr_next']
  return out
