"""The tf.data input pipeline: seeded examples -> per-host numpy batches.

Every example is a pure function of (seed, global example index): its random
stream is np.random.SeedSequence([seed, index]). Host p of P, at step n, takes the
global indices n * B_global + p * B + i (i < B, B = B_global / P), so hosts never
share an example and a run resumed at step n sees exactly the batches a fresh run
sees from step n on. tf.data only schedules: Dataset.counter -> index arithmetic ->
map(tf.numpy_function(make_example), parallel, deterministic) -> batch -> prefetch.

An example: the source's HR window (clip, centre frame and an aligned random crop)
-> flips, 90-degree rotations, temporal reversal -> degradations.degrade_window
(eq. 1, coherent over the window) -> {'lq', 'hr'} (+ {'lq_next', 'hr_next'}, the
window one frame later, cut from the same 2K + 2 degraded frames, when the
temporal loss is on).

This module and the tfds builder are the only ones importing TensorFlow.
"""

from __future__ import annotations

import dataclasses
import os
import time
from typing import Any, Callable, Iterable, Iterator

import jax
import ml_collections
import numpy as np
import tensorflow as tf

from clarity_jax.data import degradations
from clarity_jax.data import sources
from clarity_jax import errors

try:  # tf.data runs on the host: keep TensorFlow off the accelerators JAX uses.
  tf.config.set_visible_devices([], 'GPU')
except RuntimeError:  # TensorFlow already initialised its devices elsewhere
  pass

# Evaluation windows are drawn and degraded with this seed, not config.seed, so that
# every run (any seed, any resumption) is scored on the same examples.
EVAL_SEED = 2026_11_23


def host_batch_size(config: ml_collections.ConfigDict, process_count: int) -> int:
  """config.batch_size (global) split over the hosts; an error when it does not divide."""
  if config.batch_size % process_count:
    raise errors.ConfigError(
        f'config.batch_size: global batch {config.batch_size} is not divisible by '
        f'{process_count} processes')
  return config.batch_size // process_count


def window_spec(config: ml_collections.ConfigDict, temporal: bool) -> sources.WindowSpec:
  """2K + 1 frames (2K + 2 with the next window), HR crop s * c, origin aligned to s."""
  frames = 2 * config.num_neighbors + 1 + int(temporal)
  return sources.WindowSpec(frames, config.scale * config.data.crop_size, config.scale)


def augment_window(hr: np.ndarray, rng: np.random.Generator) -> np.ndarray:
  """A random element of the 8 flips/rotations (square crops) and a temporal reversal.

  The same transform applies to every frame, so motion between frames stays
  physical. The rng is consumed identically whatever the outcome.
  """
  flip, k, reverse = rng.random() < 0.5, int(rng.integers(4)), rng.random() < 0.5
  if flip:
    hr = hr[:, :, ::-1]
  if hr.shape[1] == hr.shape[2]:
    hr = np.rot90(hr, k, axes=(1, 2))
  if reverse:
    hr = hr[::-1]
  return np.ascontiguousarray(hr)


@dataclasses.dataclass(frozen=True)
class ExampleMaker:
  """(global example index) -> one example; everything else is fixed at construction."""
  source: sources.Source
  seed: int
  num_neighbors: int
  scale: int
  degradation: Any
  augment: bool
  temporal: bool

  @property
  def keys(self) -> tuple[str, ...]:
    return ('lq', 'hr', 'lq_next', 'hr_next') if self.temporal else ('lq', 'hr')

  def __call__(self, index: int) -> dict[str, np.ndarray]:
    # Independent streams per stage: e.g. a source drawing one more number does not
    # change the degradation of the same example.
    seq = np.random.SeedSequence([self.seed, int(index)])
    source_rng, augment_rng, degrade_rng = (np.random.default_rng(s) for s in seq.spawn(3))
    hr = self.source.sample(source_rng)
    if self.augment:
      hr = augment_window(hr, augment_rng)
    lq, _ = degradations.degrade_window(hr, degrade_rng, self.degradation, self.scale)
    k, t = self.num_neighbors, 2 * self.num_neighbors + 1
    example = {'lq': lq[:t], 'hr': hr[k]}
    if self.temporal:
      example['lq_next'], example['hr_next'] = lq[1:t + 1], hr[k + 1]
    return {key: np.ascontiguousarray(v, dtype=np.float32) for key, v in example.items()}


def _batched(make: ExampleMaker, shapes: dict[str, tuple[int, ...]], *, batch: int,
             global_batch: int, process_index: int, start_step: int, num_steps: int | None,
             parallel: int, prefetch: int) -> tf.data.Dataset:
  """Steps start_step.. (num_steps of them, or forever) of this host's batches."""
  first = start_step * batch
  local = (tf.data.Dataset.counter(first) if num_steps is None
           else tf.data.Dataset.range(first, first + num_steps * batch))

  def global_index(j):
    return (j // batch) * global_batch + process_index * batch + j % batch

  keys = make.keys

  def example(i: np.int64) -> tuple[np.ndarray, ...]:
    values = make(int(i))
    return tuple(values[key] for key in keys)

  def load(index):
    values = tf.numpy_function(example, [index], [tf.float32] * len(keys), stateful=False)
    for value, key in zip(values, keys):
      value.set_shape(shapes[key])
    return dict(zip(keys, values))

  ds = local.map(global_index).map(load, num_parallel_calls=parallel, deterministic=True)
  return ds.batch(batch, drop_remainder=True).prefetch(prefetch)


def _shapes(config: ml_collections.ConfigDict, temporal: bool) -> dict[str, tuple[int, ...]]:
  c, s, t = config.data.crop_size, config.scale, 2 * config.num_neighbors + 1
  shapes = {'lq': (t, c, c, 3), 'hr': (s * c, s * c, 3)}
  if temporal:
    shapes.update(lq_next=shapes['lq'], hr_next=shapes['hr'])
  return shapes


def _hosts(process_index: int | None, process_count: int | None) -> tuple[int, int]:
  index = jax.process_index() if process_index is None else process_index
  count = jax.process_count() if process_count is None else process_count
  if not 0 <= index < count:
    raise ValueError(f'process_index {index} is not in [0, {count})')
  return index, count


def create_train_iterator(config: ml_collections.ConfigDict, *, start_step: int = 0,
                          process_index: int | None = None,
                          process_count: int | None = None
                          ) -> Iterator[dict[str, np.ndarray]]:
  """Endless batches of this host, from step `start_step` of the global stream.

  Each batch: 'lq' [B, 2K+1, c, c, 3], 'hr' [B, s*c, s*c, 3] (the centre frame), and
  with config.loss.temporal_weight > 0 'lq_next' / 'hr_next' (one frame later);
  float32 in [0, 1], B = config.batch_size // process_count.
  """
  index, count = _hosts(process_index, process_count)
  batch = host_batch_size(config, count)
  temporal = config.loss.temporal_weight > 0
  make = ExampleMaker(sources.make_source(config, window_spec(config, temporal)),
                      seed=config.seed, num_neighbors=config.num_neighbors,
                      scale=config.scale, degradation=config.degradation,
                      augment=config.data.augment, temporal=temporal)
  ds = _batched(make, _shapes(config, temporal), batch=batch,
                global_batch=config.batch_size, process_index=index,
                start_step=start_step, num_steps=None,
                parallel=config.data.num_parallel_calls, prefetch=config.data.prefetch)
  return ds.as_numpy_iterator()


class _Replayable:
  """An iterable that replays the same finite tf.data stream at every iteration."""

  def __init__(self, ds: tf.data.Dataset, length: int):
    self._ds, self._length = ds, length

  def __iter__(self) -> Iterator[dict[str, np.ndarray]]:
    return self._ds.as_numpy_iterator()

  def __len__(self) -> int:
    return self._length


def create_eval_iterator(config: ml_collections.ConfigDict, *,
                         process_index: int | None = None,
                         process_count: int | None = None
                         ) -> Iterable[dict[str, np.ndarray]]:
  """config.num_eval_batches held-out batches ('lq', 'hr'), identical at every call.

  Held out: config.data.val_path when set, else the validation photographs. No
  augmentation; windows and degradations drawn with EVAL_SEED.
  """
  index, count = _hosts(process_index, process_count)
  batch = host_batch_size(config, count)
  make = ExampleMaker(sources.make_source(config, window_spec(config, False),
                                          split='validation'),
                      seed=EVAL_SEED, num_neighbors=config.num_neighbors, scale=config.scale,
                      degradation=config.degradation, augment=False, temporal=False)
  ds = _batched(make, _shapes(config, False), batch=batch, global_batch=config.batch_size,
                process_index=index, start_step=0, num_steps=config.num_eval_batches,
                parallel=config.data.num_parallel_calls, prefetch=config.data.prefetch)
  return _Replayable(ds, config.num_eval_batches)


def available_cores() -> int:
  """CPU cores this process may run on (not the machine's count, in a container)."""
  try:
    return len(os.sched_getaffinity(0))
  except AttributeError:  # not Linux
    return os.cpu_count() or 1


def measure_throughput(config: ml_collections.ConfigDict, num_batches: int,
                       warmup: int = 2,
                       clock: Callable[[], float] = time.perf_counter) -> dict[str, Any]:
  """Windows per second the training pipeline delivers on this host (one process).

  `warmup` batches are pulled first (building the source, filling the prefetch
  buffer and autotuning); the timed batches may therefore include up to
  config.data.prefetch batches made during warmup: time many batches.
  """
  if num_batches < 1:
    raise ValueError(f'num_batches must be >= 1, got {num_batches}')
  start = clock()
  it = create_train_iterator(config, process_index=0, process_count=1)
  for _ in range(warmup):
    next(it)
  ready = clock()
  for _ in range(num_batches):
    next(it)
  seconds = clock() - ready
  windows = num_batches * config.batch_size
  return {
      'what': 'input',
      'windows_per_s': windows / seconds,
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
      'num_parallel_calls': config.data.num_parallel_calls,
      'cores': available_cores(),
  }
