"""Sharp footage in, degraded training windows out (eq. 1).

The only package that imports TensorFlow, and only in its input pipeline, which
loads on first use: training code calls these entry points and never imports the
modules behind them, so the model, losses and train step run where TensorFlow is
absent.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

import ml_collections
import numpy as np

from clarity_jax.data.frames import read_image, write_image

__all__ = ['create_eval_iterator', 'create_train_iterator', 'read_image', 'write_image']


def create_train_iterator(config: ml_collections.ConfigDict, *, start_step: int = 0
                          ) -> Iterator[dict[str, np.ndarray]]:
  """This host's training batches from `start_step` on (data/pipeline.py)."""
  from clarity_jax.data import pipeline  # pylint: disable=g-import-not-at-top  (TensorFlow)
  return pipeline.create_train_iterator(config, start_step=start_step)


def create_eval_iterator(config: ml_collections.ConfigDict, **kwargs: Any
                         ) -> Iterable[dict[str, np.ndarray]]:
  """This host's fixed validation batches (data/pipeline.py)."""
  from clarity_jax.data import pipeline  # pylint: disable=g-import-not-at-top  (TensorFlow)
  return pipeline.create_eval_iterator(config, **kwargs)
