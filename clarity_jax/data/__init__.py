"""Sharp footage in, degraded training windows out (eq. 1).

The only package that imports TensorFlow, and only in its tf.data pipeline, which
loads on first use: training code calls these entry points and never imports the
modules behind them, so the model, losses and train step run where TensorFlow is
absent (config.data.loader picks tf.data or the thread-pool loader; both serve the
same batches).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from typing import Any

import ml_collections
import numpy as np

from clarity_jax.data.frames import read_image, write_image

__all__ = ['available_cores', 'camera_photos', 'codec_planes', 'create_eval_iterator',
           'create_train_iterator', 'degrade_on_device', 'example_spec', 'from_codec_planes',
           'read_image', 'render_on_device', 'training_pairs', 'video_codec_planes', 'where',
           'write_image']


def example_spec(config: ml_collections.ConfigDict) -> dict[str, tuple[tuple[int, ...], Any]]:
  """(shape, dtype) of every key of a training example (data/examples.py)."""
  from clarity_jax.data import examples  # pylint: disable=g-import-not-at-top
  return examples.example_spec(config)


def _loader_module(config: ml_collections.ConfigDict):
  from clarity_jax.data import loader  # pylint: disable=g-import-not-at-top
  if loader.choose(config) != 'tf':  # threads or worker processes
    return loader
  from clarity_jax.data import pipeline  # pylint: disable=g-import-not-at-top  (TensorFlow)
  return pipeline


def create_train_iterator(config: ml_collections.ConfigDict, *, start_step: int = 0,
                          **kwargs: Any) -> Iterator[dict[str, np.ndarray]]:
  """This host's training batches from `start_step` on."""
  return _loader_module(config).create_train_iterator(config, start_step=start_step, **kwargs)


def create_eval_iterator(config: ml_collections.ConfigDict, **kwargs: Any
                         ) -> Iterable[dict[str, np.ndarray]]:
  """This host's fixed validation batches, degraded on the host whatever
  config.degradation.where says: every run is scored on the same windows."""
  return _loader_module(config).create_eval_iterator(config, **kwargs)


def camera_photos(config: ml_collections.ConfigDict) -> tuple[np.ndarray, np.ndarray] | None:
  """The photo stack that the device renders the synthetic camera's windows from
  (jax_synthetic.photo_stack of the training photographs, in the source's order),
  or None when the host supplies HR windows (examples.device_camera)."""
  from clarity_jax.data import examples  # pylint: disable=g-import-not-at-top
  if not examples.device_camera(config):
    return None
  from clarity_jax.data import jax_synthetic  # pylint: disable=g-import-not-at-top
  from clarity_jax.data import synthetic  # pylint: disable=g-import-not-at-top
  return jax_synthetic.photo_stack(list(synthetic.load_photos('train').values()))


def render_on_device(config: ml_collections.ConfigDict, batch: Mapping[str, Any],
                     photos: tuple[Any, Any]) -> dict[str, Any]:
  """The synthetic camera's device batch (its 'cam_*' arrays) -> the same batch with
  its frames instead, 'cam_frames' [B, F, H, W, 3], rendered from `photos`
  (camera_photos, on the device). degrade_on_device takes it from there. Inside jit.

  Its own program, not fused with degrade_on_device: XLA:CPU ran the two together
  3 times slower than one after the other (measured). And the frames are
  its only output: XLA:CPU fuses a render into each slice of it that leaves the
  program, so slicing out the targets here rendered them twice (measured 2.3x).
  """
  from clarity_jax.data import jax_synthetic  # pylint: disable=g-import-not-at-top
  from clarity_jax.data import synthetic  # pylint: disable=g-import-not-at-top
  cam = {key: batch[f'cam_{key}'] for key in jax_synthetic.ARRAY_KEYS}
  out = {key: v for key, v in batch.items() if not key.startswith('cam_')}
  out['cam_frames'] = jax_synthetic.render(*photos, cam, config.scale * config.data.crop_size,
                                           synthetic.SyntheticSource.edge_px)
  return out


def _camera_windows(config: ml_collections.ConfigDict, batch: Mapping[str, Any]
                    ) -> dict[str, Any]:
  """render_on_device's batch -> HR windows 'hr_window' [B, T', H, W, 3] and targets
  'hr' (and 'hr_next'), as the host's examples carry them on other sources."""
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


def degrade_on_device(config: ml_collections.ConfigDict, batch: Mapping[str, Any]
                      ) -> tuple[dict[str, Any], Any]:
  """A device batch (config.degradation.where='device') with HR windows, or the
  camera's frames (render_on_device) -> (targets
  {'hr'[, 'hr_next']}, windows [B, T', H/s, W/s, 3] degraded by eq. (1) but the
  video codec), its noise from (config.seed, 'index'). Inside jit."""
  from clarity_jax.data import jax_degradations  # pylint: disable=g-import-not-at-top
  if 'cam_frames' in batch:
    batch = _camera_windows(config, batch)
  targets = {key: batch[key] for key in ('hr', 'hr_next') if key in batch}
  arrays = {key[len('deg_'):]: v for key, v in batch.items() if key.startswith('deg_')}
  keys = jax_degradations.example_keys(config.seed, batch['index'])
  return targets, jax_degradations.degrade(batch['hr_window'], arrays, keys, config.scale)


def training_pairs(targets: Mapping[str, Any], windows: Any, num_neighbors: int
                   ) -> dict[str, Any]:
  """Degraded windows [B, T', ...] and their targets -> what the model trains on:
  {'lq', 'hr'} (+ {'lq_next', 'hr_next'}, the window one frame later)."""
  t = 2 * num_neighbors + 1
  out = {'lq': windows[:, :t], 'hr': targets['hr']}
  if 'hr_next' in targets:
    out['lq_next'], out['hr_next'] = windows[:, 1:t + 1], targets['hr_next']
  return out


def where(config: ml_collections.ConfigDict) -> str:
  """Where eq. (1) runs for `config`: 'host' or 'device' (examples.where)."""
  from clarity_jax.data import examples  # pylint: disable=g-import-not-at-top
  return examples.where(config)


def codec_planes(windows: Any) -> Any:
  """Inside jit: windows [B, T, h, w, 3] float -> the yuv420p planes that x264
  reads, exactly as the host's codec converts them (jax_codecs.window_planes)."""
  from clarity_jax.data import jax_codecs  # pylint: disable=g-import-not-at-top
  return jax_codecs.window_planes(windows)


def from_codec_planes(planes: Any, height: int, width: int) -> Any:
  """Inside jit: the inverse of codec_planes, float32 [B, T, height, width, 3]."""
  from clarity_jax.data import jax_codecs  # pylint: disable=g-import-not-at-top
  return jax_codecs.window_rgb(planes, height, width)


def video_codec_planes(planes: np.ndarray, crf: int, codec: str = 'libx264') -> np.ndarray:
  """The video codec's round trip of one window's yuv420p planes (codec_planes),
  x264 alone: the host's share of eq. (1) when the device degrades (train/feed.py)."""
  from clarity_jax.data import codecs  # pylint: disable=g-import-not-at-top
  return codecs.video_codec_yuv(planes, crf, codec)


def available_cores() -> int:
  """CPU cores this process may run on (examples.available_cores)."""
  from clarity_jax.data import examples  # pylint: disable=g-import-not-at-top
  return examples.available_cores()
