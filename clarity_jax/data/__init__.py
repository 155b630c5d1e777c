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

__all__ = ['available_cores', 'create_eval_iterator', 'create_train_iterator',
           'degrade_on_device', 'degrade_windows_on_device', 'example_spec', 'read_image',
           'training_pairs', 'video_codec', 'where', 'write_image']


def example_spec(config: ml_collections.ConfigDict) -> dict[str, tuple[tuple[int, ...], Any]]:
  """(shape, dtype) of every key of a training example (data/examples.py)."""
  from clarity_jax.data import examples  # pylint: disable=g-import-not-at-top
  return examples.example_spec(config)


def _loader_module(config: ml_collections.ConfigDict):
  from clarity_jax.data import loader  # pylint: disable=g-import-not-at-top
  if loader.choose(config) == 'threads':
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


def degrade_windows_on_device(batch: Mapping[str, Any], *, seed: int, scale: int) -> Any:
  """Eq. (1) but the video codec on every 'hr_window' of a device-degradation batch
  (config.degradation.where='device'), with its 'deg_*' parameters and noise keys
  from (seed, 'index'): [B, T', H/s, W/s, 3]. Inside jit."""
  from clarity_jax.data import jax_degradations  # pylint: disable=g-import-not-at-top
  arrays = {k[len('deg_'):]: v for k, v in batch.items() if k.startswith('deg_')}
  keys = jax_degradations.example_keys(seed, batch['index'])
  return jax_degradations.degrade(batch['hr_window'], arrays, keys, scale)


def training_pairs(batch: Mapping[str, Any], windows: Any, num_neighbors: int
                   ) -> dict[str, Any]:
  """Degraded windows [B, T', ...] and a batch's targets -> what the model trains on:
  {'lq', 'hr'} (+ {'lq_next', 'hr_next'}, the window one frame later)."""
  t = 2 * num_neighbors + 1
  out = {'lq': windows[:, :t], 'hr': batch['hr']}
  if 'hr_next' in batch:
    out['lq_next'], out['hr_next'] = windows[:, 1:t + 1], batch['hr_next']
  return out


def degrade_on_device(batch: Mapping[str, Any], *, seed: int, scale: int,
                      num_neighbors: int) -> dict[str, Any]:
  """A device-degradation batch without codec windows -> the batch the model trains
  on (training_pairs). Inside jit."""
  return training_pairs(batch, degrade_windows_on_device(batch, seed=seed, scale=scale),
                        num_neighbors)


def where(config: ml_collections.ConfigDict) -> str:
  """Where eq. (1) runs for `config`: 'host' or 'device' (examples.where)."""
  from clarity_jax.data import examples  # pylint: disable=g-import-not-at-top
  return examples.where(config)


def video_codec(frames: np.ndarray, crf: int, codec: str = 'libx264') -> np.ndarray:
  """The video codec's round trip of a window (codecs.video_codec), for the windows
  the device degraded and the host compresses (train/feed.py)."""
  from clarity_jax.data import codecs  # pylint: disable=g-import-not-at-top
  return codecs.video_codec(frames, crf, codec)


def available_cores() -> int:
  """CPU cores this process may run on (examples.available_cores)."""
  from clarity_jax.data import examples  # pylint: disable=g-import-not-at-top
  return examples.available_cores()
