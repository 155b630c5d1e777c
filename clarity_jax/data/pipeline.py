"""The tf.data input pipeline: seeded examples -> per-host numpy batches.

tf.data only schedules: Dataset.counter -> the host's global indices ->
map(tf.numpy_function(make_example), parallel, deterministic) -> batch -> prefetch
(device examples: one tf.numpy_function per batch). The examples and their shapes
(examples.py) and this host's indices (host_stream.py) are TensorFlow-free;
loader.py serves the same batches with a thread pool where TensorFlow is absent.

This module and the tfds builder are the only ones importing TensorFlow.
"""

from __future__ import annotations

from typing import Callable, Iterable, Iterator

import ml_collections
import numpy as np
import tensorflow as tf

from clarity_jax.data import examples
from clarity_jax.data import host_stream

Make = Callable[[int], dict[str, np.ndarray]]  # global example index -> example

try:  # tf.data runs on the host: keep TensorFlow off the accelerators JAX uses.
  tf.config.set_visible_devices([], 'GPU')
except RuntimeError:  # TensorFlow already initialised its devices elsewhere
  pass


def _numpy_batches(ds: tf.data.Dataset, failures: list[Exception]
                   ) -> Iterator[dict[str, np.ndarray]]:
  """The numpy batches of a tf.data stream; an example's own exception (say, a
  FrameError naming a corrupt frame, kept in `failures` by _recording_failures) is
  raised as itself, not inside a TensorFlow traceback, so the command ends with the
  one-line error."""
  it = ds.as_numpy_iterator()
  while True:
    try:
      batch = next(it)
    except StopIteration:
      return
    except tf.errors.OpError:
      # Freed now, not at interpreter exit, where its worker threads (blocked on
      # the GIL) would hang the process after the error is printed.
      del it
      if failures:
        raise failures[0] from None
      raise
    yield batch


def _dataset(make: examples.ExampleMaker, config: ml_collections.ConfigDict, *,
             batch: int, process_index: int, start_step: int, num_steps: int | None,
             failures: list[Exception]) -> tf.data.Dataset:
  """Steps start_step.. (num_steps of them, or forever) of this host's batches; an
  example's exception is also kept in `failures`."""
  per_call = _batch_per_call if make.device else _example_per_call
  ds = per_call(_recording_failures(make, failures), make.spec, batch=batch,
                global_batch=config.batch_size, process_index=process_index,
                start_step=start_step, num_steps=num_steps,
                parallel=host_stream.parallel_calls(make, config.data.num_parallel_calls))
  return ds.prefetch(config.data.prefetch)


def _example_per_call(made: Make, spec: dict[str, examples.Spec], *, batch: int,
                      global_batch: int, process_index: int, start_step: int,
                      num_steps: int | None, parallel: int) -> tf.data.Dataset:
  """_dataset's stream made one example per tf.numpy_function call, then batched."""
  keys = tuple(spec)
  first = start_step * batch
  local = (tf.data.Dataset.counter(first) if num_steps is None
           else tf.data.Dataset.range(first, first + num_steps * batch))

  def example(i: np.int64) -> tuple[np.ndarray, ...]:
    values = made(int(i))
    return tuple(values[key] for key in keys)

  def to_global(j):
    return host_stream.global_index(j, batch=batch, global_batch=global_batch,
                                     process_index=process_index)

  ds = local.map(to_global).map(_numpy_map(example, spec), num_parallel_calls=parallel,
                                deterministic=True)
  return ds.batch(batch, drop_remainder=True)


def _batch_per_call(made: Make, spec: dict[str, examples.Spec], *, batch: int,
                    global_batch: int, process_index: int, start_step: int,
                    num_steps: int | None, parallel: int) -> tf.data.Dataset:
  """_dataset's stream made one batch per tf.numpy_function call: for device examples.

  A device example is a few small arrays drawn in Python, so tf.data's cost per call
  and per tensor dominated it, and the loader cost more CPU per window than the
  thread pool (docs/performance.md). The same examples, stacked in the same order:
  the same bytes.
  """
  def stacked(step: np.int64) -> tuple[np.ndarray, ...]:
    first = int(step) * batch
    values = [made(host_stream.global_index(j, batch=batch, global_batch=global_batch,
                                            process_index=process_index))
              for j in range(first, first + batch)]
    return tuple(np.stack([v[key] for v in values]) for key in spec)

  steps = (tf.data.Dataset.counter(start_step) if num_steps is None
           else tf.data.Dataset.range(start_step, start_step + num_steps))
  return steps.map(_numpy_map(stacked, spec, (batch,)), num_parallel_calls=parallel,
                   deterministic=True)


def _recording_failures(make: examples.ExampleMaker, failures: list[Exception]) -> Make:
  """make, with an example's own exception kept in `failures` for _numpy_batches,
  which raises it instead of TensorFlow's wrapper."""
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
  index, batch = host_stream.host_share(config, process_index, process_count)
  failures: list[Exception] = []
  ds = _dataset(examples.train_maker(config), config, batch=batch, process_index=index,
                start_step=start_step, num_steps=None, failures=failures)
  return _numpy_batches(ds, failures)


def create_eval_iterator(config: ml_collections.ConfigDict, *,
                         process_index: int | None = None,
                         process_count: int | None = None
                         ) -> Iterable[dict[str, np.ndarray]]:
  """config.num_eval_batches held-out batches ('lq', 'hr'), identical at every call.

  Held out: config.data.val_path when set, else the validation photographs. No
  augmentation; windows and degradations drawn with EVAL_SEED (examples.eval_maker).
  """
  index, batch = host_stream.host_share(config, process_index, process_count)
  failures: list[Exception] = []
  ds = _dataset(examples.eval_maker(config), config, batch=batch, process_index=index,
                start_step=0, num_steps=config.num_eval_batches, failures=failures)
  return host_stream.Replayable(lambda: _numpy_batches(ds, failures),
                                config.num_eval_batches)
