"""This host's share of the global example stream, as both loaders serve it
(pipeline.py: tf.data; loader.py: threads).

Every example is a pure function of (seed, global example index) (examples.py).
Host p of P, at step n, takes the global indices n * B_global + p * B + i (i < B,
B = B_global / P), so hosts never share an example and a run resumed at step n
sees exactly the batches a fresh run sees from step n on. Both loaders take the
host's share, the index arithmetic and the thread count from here and the examples
from examples.py, which is what makes their batches the same bytes.
"""

from __future__ import annotations

import os
from typing import Callable, Iterator

import jax
import ml_collections
import numpy as np

from clarity_jax.data import examples
from clarity_jax import errors


def host_share(config: ml_collections.ConfigDict, process_index: int | None,
               process_count: int | None) -> tuple[int, int]:
  """(this host's index, its batch: config.batch_size split over the hosts). The
  hosts are JAX's unless given (to simulate hosts); an error when the global batch
  does not divide over them."""
  index = jax.process_index() if process_index is None else process_index
  count = jax.process_count() if process_count is None else process_count
  if not 0 <= index < count:
    raise ValueError(f'process_index {index} is not in [0, {count})')
  if config.batch_size % count:
    raise errors.ConfigError(
        f'config.batch_size: global batch {config.batch_size} is not divisible by '
        f'{count} processes')
  return index, config.batch_size // count


def global_index(j, *, batch: int, global_batch: int, process_index: int):
  """The global example index of this host's j-th example (ints or tf int64 tensors).

  Step j // batch of the global stream, this host's slice of it, position j % batch.
  """
  return (j // batch) * global_batch + process_index * batch + j % batch


def parallel_calls(make: examples.ExampleMaker, requested: int) -> int:
  """How many threads make `make`'s examples: config.data.num_parallel_calls
  (-1: the loader's default, one per core), but one for the synthetic camera's
  device examples: they are Python holding the GIL, and a second thread only
  contends for it (docs/performance.md)."""
  return 1 if make.camera and requested < 0 else requested


def available_cores() -> int:
  """CPU cores this process may run on (not the machine's count, in a container)."""
  try:
    return len(os.sched_getaffinity(0))
  except AttributeError:  # not Linux
    return os.cpu_count() or 1


class Replayable:
  """A finite stream of batches, the same at every iteration: start() begins it anew."""

  def __init__(self, start: Callable[[], Iterator[dict[str, np.ndarray]]], length: int):
    self._start, self._length = start, length

  def __iter__(self) -> Iterator[dict[str, np.ndarray]]:
    return self._start()

  def __len__(self) -> int:
    return self._length
