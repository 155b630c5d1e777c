"""The TensorFlow-free input loader: the tf.data pipeline's batches from a thread pool.

Same global indices (host_stream.py), same examples (examples.ExampleMaker), same
batches byte for byte as pipeline.py; it serves where TensorFlow is not installed
(accelerator hosts) or when config.data.loader == 'threads'. `choose` picks the
loader for a config.

Why threads: the heavy parts of an example (cv2, NumPy, PyAV's codec) release the
GIL, so a thread pool runs them in parallel as tf.data's map does, with no process
boundary to copy windows across. Why not Grain: the stream is a pure function of
(seed, index), so the iterator state is one integer (the step) and resuming needs
nothing more than `start_step`; Grain's samplers, checkpointable iterator state and
worker processes would add a dependency to carry to TensorFlow-free accelerator
hosts and buy nothing here.

Scheduling: examples are submitted in index order, at most `prefetch` batches
beyond the one being assembled; results are taken in submission order
(deterministic whatever the thread timing). An example's exception reaches the
consumer as is, once, and ends the stream; closing or dropping the iterator (or
exhausting a finite one) cancels what is queued and joins the threads.
"""

from __future__ import annotations

import collections
from concurrent import futures
import itertools
from typing import Iterable, Iterator

import ml_collections
import numpy as np

from clarity_jax.data import examples
from clarity_jax.data import host_stream
from clarity_jax import errors

LOADERS = ('auto', 'tf', 'threads')
# tf.data.AUTOTUNE is -1; here it means these many batches ahead.
_AUTOTUNE_PREFETCH = 2


def _tensorflow_error() -> str | None:
  """Why `import tensorflow` fails here, or None when it works."""
  try:
    import tensorflow  # noqa: F401  # pylint: disable=g-import-not-at-top,unused-import
  except ImportError as e:
    return str(e) or e.__class__.__name__
  return None


def choose(config: ml_collections.ConfigDict) -> str:
  """'tf' or 'threads': the loader config.data.loader asks for ('auto' by default:
  tf.data where TensorFlow imports, else the thread pool)."""
  loader = config.data.get('loader', 'auto')
  if loader not in LOADERS:
    raise errors.ConfigError(f'config.data.loader: {loader!r} is not one of {LOADERS}')
  if loader == 'threads':
    return loader
  problem = _tensorflow_error()
  if loader == 'tf' and problem is not None:
    raise errors.ConfigError(f"config.data.loader: 'tf' needs TensorFlow, which does not "
                             f"import here ({problem}); use 'threads' or 'auto'")
  return 'tf' if problem is None else 'threads'


def _prefetch(config: ml_collections.ConfigDict) -> int:
  n = config.data.prefetch
  return n if n >= 0 else _AUTOTUNE_PREFETCH


def _stacked_in_threads(make: examples.ExampleMaker, indices: Iterator[int], *,
                        batch: int, workers: int, prefetch: int
                        ) -> Iterator[dict[str, np.ndarray]]:
  """make(i) for the `indices` in a pool of `workers` threads, stacked `batch` at a
  time, in order.

  A generator: the threads start on the first next(), and its `finally` (reached
  at the end of the indices, on an error, on close() or when the iterator is
  garbage collected) cancels the queued examples and joins the threads.
  """
  ahead = (prefetch + 1) * batch  # the batch being assembled and `prefetch` more
  pool = futures.ThreadPoolExecutor(max_workers=max(1, min(workers, ahead)),
                                    thread_name_prefix='clarity_jax.loader')
  pending: collections.deque[futures.Future] = collections.deque()
  try:
    while True:
      for i in itertools.islice(indices, ahead - len(pending)):
        pending.append(pool.submit(make, i))
      if len(pending) < batch:  # a finite stream ended (tf.data's drop_remainder)
        return
      # Future.result re-raises the example's own exception object.
      values = [pending.popleft().result() for _ in range(batch)]
      yield {key: np.stack([v[key] for v in values]) for key in make.keys}
  finally:
    for f in pending:
      f.cancel()
    pool.shutdown(wait=True, cancel_futures=True)


def _batch_stream(make: examples.ExampleMaker, config: ml_collections.ConfigDict, *,
                  batch: int, process_index: int, start_step: int, num_steps: int | None
                  ) -> Iterator[dict[str, np.ndarray]]:
  """Steps start_step.. (num_steps of them, or forever) of this host's batches."""
  first = start_step * batch
  local = (itertools.count(first) if num_steps is None
           else range(first, first + num_steps * batch))
  indices = (host_stream.global_index(j, batch=batch, global_batch=config.batch_size,
                                      process_index=process_index) for j in local)
  requested = host_stream.parallel_calls(make, config.data.num_parallel_calls)
  workers = requested if requested > 0 else host_stream.available_cores()
  return _stacked_in_threads(make, indices, batch=batch, workers=workers,
                             prefetch=_prefetch(config))


def create_train_iterator(config: ml_collections.ConfigDict, *, start_step: int = 0,
                          process_index: int | None = None,
                          process_count: int | None = None
                          ) -> Iterator[dict[str, np.ndarray]]:
  """Endless batches of this host from step `start_step`: pipeline.create_train_iterator's.

  The iterator is a generator: close() it (or drop it) to stop its threads.
  """
  index, batch = host_stream.host_share(config, process_index, process_count)
  return _batch_stream(examples.train_maker(config), config, batch=batch,
                       process_index=index, start_step=start_step, num_steps=None)


def create_eval_iterator(config: ml_collections.ConfigDict, *,
                         process_index: int | None = None,
                         process_count: int | None = None
                         ) -> Iterable[dict[str, np.ndarray]]:
  """config.num_eval_batches held-out batches, identical at every call and iteration
  (fresh threads each time): pipeline.create_eval_iterator's."""
  index, batch = host_stream.host_share(config, process_index, process_count)
  make = examples.eval_maker(config)
  return host_stream.Replayable(
      lambda: _batch_stream(make, config, batch=batch, process_index=index, start_step=0,
                            num_steps=config.num_eval_batches),
      config.num_eval_batches)
