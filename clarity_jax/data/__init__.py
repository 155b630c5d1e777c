"""Sharp footage in, degraded training windows out (eq. 1).

Training calls this package and data.on_device (eq. (1) on the device), never the
modules behind them. The only package that imports TensorFlow, and only in its
tf.data pipeline, which loads on first use: the model, losses and train step run
where TensorFlow is absent (config.data.loader picks tf.data or the thread loader;
both serve the same batches).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

import ml_collections
import numpy as np

from clarity_jax.data import loader
from clarity_jax.data.codecs import video_codec_yuv
from clarity_jax.data.examples import degrade_on, example_spec
from clarity_jax.data.host_stream import available_cores

__all__ = ['available_cores', 'create_eval_iterator', 'create_train_iterator', 'degrade_on',
           'example_spec', 'video_codec_yuv']


def _loader_module(config: ml_collections.ConfigDict):
  if loader.choose(config) != 'tf':
    return loader
  from clarity_jax.data import pipeline  # pylint: disable=g-import-not-at-top  (TensorFlow, on use)
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
