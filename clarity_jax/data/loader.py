"""The TensorFlow-free input loader: the tf.data pipeline's batches from a thread pool.

Same global indices, same examples (examples.ExampleMaker), same batches byte for
byte as pipeline.py; it serves where TensorFlow is not installed (accelerator hosts)
or when config.data.loader == 'threads'; with 'processes' the examples are made in
worker processes (worker_pool.py). `choose` picks the loader for a config.

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
import time
from typing import Any, Callable, Iterable, Iterator

import ml_collections
import numpy as np

from clarity_jax.data import examples
from clarity_jax import errors

LOADERS = ('auto', 'tf', 'threads', 'processes')
# tf.data.AUTOTUNE is -1; here it means these many batches ahead.
_AUTOTUNE_PREFETCH = 2


def _tensorflow_error() -> str | None:
  """Why `import tensorflow` fails here, or None when it works."""
  try:
    import tensorflow  # pylint: disable=g-import-not-at-top,unused-import
  except ImportError as e:
    return str(e) or e.__class__.__name__
  return None


def choose(config: ml_collections.ConfigDict) -> str:
  """'tf', 'threads' or 'processes': the loader config.data.loader asks for ('auto'
  by default).

  'auto' is worker processes for the synthetic camera's device examples (Python
  holding the GIL: one process makes about 450 windows/s, two on 2 cores 800), else
  tf.data when TensorFlow imports, else the thread pool.
  """
  loader = config.data.get('loader', 'auto')
  if loader not in LOADERS:
    raise errors.ConfigError(f'config.data.loader: {loader!r} is not one of {LOADERS}')
  if loader in ('threads', 'processes'):
    return loader
  if loader == 'auto' and examples.device_camera(config):
    return 'processes'
  problem = _tensorflow_error()
  if loader == 'tf' and problem is not None:
    raise errors.ConfigError(f"config.data.loader: 'tf' needs TensorFlow, which does not "
                             f"import here ({problem}); use 'threads' or 'auto'")
  return 'tf' if problem is None else 'threads'


def _prefetch(config: ml_collections.ConfigDict) -> int:
  n = config.data.prefetch
  return n if n >= 0 else _AUTOTUNE_PREFETCH


def _batches(make: examples.ExampleMaker, indices: Iterator[int], *, batch: int,
             workers: int, prefetch: int, processes: Callable[[int], Any] | None = None
             ) -> Iterator[dict[str, np.ndarray]]:
  """Batches of make(i) for consecutive runs of `batch` indices, in order.

  A generator: threads (or, with `processes`, the worker_pool.ExamplePool that
  processes(slots) starts) start on the first next(), and its `finally` (reached at
  the end of the indices, on an error, on close() or when the iterator is garbage
  collected) cancels the queued examples and joins the threads or processes.
  """
  ahead = (prefetch + 1) * batch  # the batch being assembled and `prefetch` more
  pool = processes(ahead) if processes else futures.ThreadPoolExecutor(
      max_workers=max(1, min(workers, ahead)), thread_name_prefix='clarity_jax.loader')
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


def _stream(make: examples.ExampleMaker, config: ml_collections.ConfigDict, *,
            batch: int, process_index: int, first_step: int, num_steps: int | None,
            processes: bool = False) -> Iterator[dict[str, np.ndarray]]:
  local = (itertools.count(first_step * batch) if num_steps is None
           else range(first_step * batch, (first_step + num_steps) * batch))
  indices = (examples.global_index(j, batch=batch, global_batch=config.batch_size,
                                   process_index=process_index) for j in local)
  requested = config.data.num_parallel_calls
  if not processes:
    requested = examples.parallel_calls(make, requested)
  workers = requested if requested > 0 else examples.available_cores()
  pool = None
  if processes:
    from clarity_jax.data import worker_pool  # pylint: disable=g-import-not-at-top
    pool = lambda slots: worker_pool.ExamplePool(config, 'train', make.spec, workers, slots)
  return _batches(make, indices, batch=batch, workers=workers, prefetch=_prefetch(config),
                  processes=pool)


def create_train_iterator(config: ml_collections.ConfigDict, *, start_step: int = 0,
                          process_index: int | None = None,
                          process_count: int | None = None
                          ) -> Iterator[dict[str, np.ndarray]]:
  """Endless batches of this host from step `start_step`: pipeline.create_train_iterator's.

  The iterator is a generator: close() it (or drop it) to stop its threads.
  """
  index, count = examples.hosts(process_index, process_count)
  batch = examples.host_batch_size(config, count)
  return _stream(examples.train_maker(config), config, batch=batch, process_index=index,
                 first_step=start_step, num_steps=None,
                 processes=choose(config) == 'processes')


class _Replayable:
  """The same finite stream of batches at every iteration (fresh threads each time)."""

  def __init__(self, start: Callable[[], Iterator[dict[str, np.ndarray]]], length: int):
    self._start, self._length = start, length

  def __iter__(self) -> Iterator[dict[str, np.ndarray]]:
    return self._start()

  def __len__(self) -> int:
    return self._length


def create_eval_iterator(config: ml_collections.ConfigDict, *,
                         process_index: int | None = None,
                         process_count: int | None = None
                         ) -> Iterable[dict[str, np.ndarray]]:
  """config.num_eval_batches held-out batches, identical at every call and iteration:
  pipeline.create_eval_iterator's."""
  index, count = examples.hosts(process_index, process_count)
  batch = examples.host_batch_size(config, count)
  make = examples.eval_maker(config)
  return _Replayable(
      lambda: _stream(make, config, batch=batch, process_index=index, first_step=0,
                      num_steps=config.num_eval_batches),
      config.num_eval_batches)


def measure_throughput(config: ml_collections.ConfigDict, num_batches: int,
                       warmup: int = 2,
                       clock: Callable[[], float] = time.perf_counter) -> dict[str, Any]:
  """Windows per second the training input (the loader `choose` picks) delivers
  here, and the host CPU time each costs.

  One process. `warmup` batches are pulled first (building the source, filling
  the prefetch buffer, tf.data's autotuning); the timed batches may therefore
  include up to config.data.prefetch batches made during warmup: time many batches.
  """
  if num_batches < 1:
    raise ValueError(f'num_batches must be >= 1, got {num_batches}')
  kind = choose(config)
  if kind == 'tf':
    from clarity_jax.data import pipeline  # pylint: disable=g-import-not-at-top  (TensorFlow)
    create = pipeline.create_train_iterator
  else:
    create = create_train_iterator
  start = clock()
  it = create(config, process_index=0, process_count=1)
  for _ in range(warmup):
    next(it)
  # With worker processes, their CPU time too (worker_pool.cpu_seconds).
  from clarity_jax.data import worker_pool  # pylint: disable=g-import-not-at-top
  ready, cpu = clock(), time.process_time() + worker_pool.cpu_seconds()
  for _ in range(num_batches):
    next(it)
  seconds = clock() - ready
  cpu = time.process_time() + worker_pool.cpu_seconds() - cpu
  if kind != 'tf':
    it.close()  # join the threads (or processes) now, not whenever the generator is collected
  windows = num_batches * config.batch_size
  return {
      'what': 'input',
      'loader': kind,
      'windows_per_s': windows / seconds,
      # CPU time of the whole process (every loader thread, every worker process)
      # per window made.
      'cpu_ms_per_window': cpu / windows * 1e3,
      'batches_per_s': num_batches / seconds,
      'seconds': seconds,
      'startup_seconds': ready - start,
      'num_batches': num_batches,
      'batch': config.batch_size,
      'K': config.num_neighbors,
      'frames_per_window': 2 * config.num_neighbors + 1 + int(config.loss.temporal_weight > 0),
      'crop': config.data.crop_size,
      'scale': config.scale,
      'source': config.data.source,
      'degradation_where': examples.degrade_on(config),
      'video_codec_prob': config.degradation.video_codec_prob,
      'num_parallel_calls': config.data.num_parallel_calls,
      'cores': examples.available_cores(),
  }
