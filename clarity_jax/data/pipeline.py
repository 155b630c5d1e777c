"""The tf.data input pipeline: seeded examples -> per-host numpy batches.

tf.data only schedules: Dataset.counter -> the host's global indices ->
map(tf.numpy_function(make_example), parallel, deterministic) -> batch -> prefetch.
The examples, the index arithmetic and the shapes are TensorFlow-free and live in
examples.py; loader.py serves the same batches with a thread pool where TensorFlow
is absent. The names callers used from here before that split stay available.

This module and the tfds builder are the only ones importing TensorFlow.
"""

from __future__ import annotations

from typing import Iterable, Iterator

import ml_collections
import numpy as np
import tensorflow as tf

from clarity_jax.data import examples
# Re-exported: callers keep using pipeline.<name>.
from clarity_jax.data.examples import (  # pylint: disable=unused-import
    host_batch_size)

try:  # tf.data runs on the host: keep TensorFlow off the accelerators JAX uses.
  tf.config.set_visible_devices([], 'GPU')
except RuntimeError:  # TensorFlow already initialised its devices elsewhere
  pass


class _Batches:
  """The numpy batches of a tf.data stream; an example's own exception (say, a
  FrameError naming a corrupt frame) is raised as itself, not inside a TensorFlow
  traceback, so the command ends with the one-line error."""

  def __init__(self, ds: tf.data.Dataset, failures: list[Exception]):
    self._ds, self._failures = ds, failures

  def __iter__(self) -> Iterator[dict[str, np.ndarray]]:
    it = self._ds.as_numpy_iterator()
    while True:
      try:
        batch = next(it)
      except StopIteration:
        return
      except tf.errors.OpError:
        # Freed now, not at interpreter exit, where its worker threads (blocked on
        # the GIL) would hang the process after the error is printed.
        del it
        if self._failures:
          raise self._failures[0] from None
        raise
      yield batch


def _batched(make: examples.ExampleMaker, *, batch: int, global_batch: int,
             process_index: int, start_step: int, num_steps: int | None,
             parallel: int, prefetch: int) -> _Batches:
  """Steps start_step.. (num_steps of them, or forever) of this host's batches."""
  failures: list[Exception] = []
  first = start_step * batch
  local = (tf.data.Dataset.counter(first) if num_steps is None
           else tf.data.Dataset.range(first, first + num_steps * batch))
  spec = make.spec
  keys = tuple(spec)

  made = _recording(make, failures)

  def example(i: np.int64) -> tuple[np.ndarray, ...]:
    values = made(int(i))
    return tuple(values[key] for key in keys)

  load = _numpy_map(example, spec)

  def to_global(j):
    return examples.global_index(j, batch=batch, global_batch=global_batch,
                                 process_index=process_index)

  parallel = examples.parallel_calls(make, parallel)
  if make.device:
    return _Batches(_device_batches(make, batch=batch, global_batch=global_batch,
                                    process_index=process_index, start_step=start_step,
                                    num_steps=num_steps, parallel=parallel,
                                    failures=failures).prefetch(prefetch), failures)
  ds = local.map(to_global).map(load, num_parallel_calls=parallel, deterministic=True)
  return _Batches(ds.batch(batch, drop_remainder=True).prefetch(prefetch), failures)


def _device_batches(make: examples.ExampleMaker, *, batch: int, global_batch: int,
                    process_index: int, start_step: int, num_steps: int | None,
                    parallel: int, failures: list[Exception]) -> tf.data.Dataset:
  """_batched's stream for device examples: one tf.numpy_function per batch.

  A device example is a few small arrays drawn in Python (about 2 CPU ms), so
  tf.data's cost per call and per tensor dominated it: per example, the loader
  cost 6.7 CPU ms per window, against 3.9 for the thread pool (docs/performance.md).
  The same examples, stacked in the same order: the same bytes.
  """
  spec, made = make.spec, _recording(make, failures)

  def stacked(step: np.int64) -> tuple[np.ndarray, ...]:
    first = int(step) * batch
    values = [made(examples.global_index(j, batch=batch, global_batch=global_batch,
                                         process_index=process_index))
              for j in range(first, first + batch)]
    return tuple(np.stack([v[key] for v in values]) for key in spec)

  steps = (tf.data.Dataset.counter(start_step) if num_steps is None
           else tf.data.Dataset.range(start_step, start_step + num_steps))
  return steps.map(_numpy_map(stacked, spec, (batch,)), num_parallel_calls=parallel,
                   deterministic=True)


def _recording(make: examples.ExampleMaker, failures: list[Exception]):
  """make, with an example's own exception kept for _Batches, which raises it
  instead of TensorFlow's wrapper."""
  def call(index: int) -> dict[str, np.ndarray]:
    try:
      return make(index)
    except Exception as e:
      failures.append(e)
      raise
  return call


def _numpy_map(fn, spec: dict[str, examples.Spec], lead: tuple[int, ...] = ()):
  """A tf.data map function: fn(index) -> arrays in spec's key order, each of
  shape lead + spec's, as a dict of tensors with those static shapes."""
  keys = tuple(spec)

  def load(index):
    values = tf.numpy_function(fn, [index], [tf.as_dtype(spec[k][1]) for k in keys],
                               stateful=False)
    for value, key in zip(values, keys):
      value.set_shape((*lead, *spec[key][0]))
    return dict(zip(keys, values))
  return load


def create_train_iterator(config: ml_collections.ConfigDict, *, start_step: int = 0,
                          process_index: int | None = None,
                          process_count: int | None = None
                          ) -> Iterator[dict[str, np.ndarray]]:
  """Endless batches of this host, from step `start_step` of the global stream.

  Each batch: 'lq' [B, 2K+1, c, c, 3], 'hr' [B, s*c, s*c, 3] (the centre frame), and
  with config.loss.temporal_weight > 0 'lq_next' / 'hr_next' (one frame later);
  float32 in [0, 1], B = config.batch_size // process_count. With
  config.degradation.where == 'device', also the keys of examples.ExampleMaker.
  """
  index, count = examples.hosts(process_index, process_count)
  batch = host_batch_size(config, count)
  ds = _batched(examples.train_maker(config), batch=batch, global_batch=config.batch_size,
                process_index=index, start_step=start_step, num_steps=None,
                parallel=config.data.num_parallel_calls, prefetch=config.data.prefetch)
  return iter(ds)


class _Replayable:
  """An iterable that replays the same finite tf.data stream at every iteration."""

  def __init__(self, batches: _Batches, length: int):
    self._batches, self._length = batches, length

  def __iter__(self) -> Iterator[dict[str, np.ndarray]]:
    return iter(self._batches)

  def __len__(self) -> int:
    return self._length


def create_eval_iterator(config: ml_collections.ConfigDict, *,
                         process_index: int | None = None,
                         process_count: int | None = None
                         ) -> Iterable[dict[str, np.ndarray]]:
  """config.num_eval_batches held-out batches ('lq', 'hr'), identical at every call.

  Held out: config.data.val_path when set, else the validation photographs. No
  augmentation; windows and degradations drawn with EVAL_SEED (examples.eval_maker).
  """
  index, count = examples.hosts(process_index, process_count)
  batch = host_batch_size(config, count)
  ds = _batched(examples.eval_maker(config), batch=batch, global_batch=config.batch_size,
                process_index=index, start_step=0, num_steps=config.num_eval_batches,
                parallel=config.data.num_parallel_calls, prefetch=config.data.prefetch)
  return _Replayable(ds, config.num_eval_batches)
