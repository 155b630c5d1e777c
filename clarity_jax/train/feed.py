"""Training batches from the loader to the step.

Host-degraded batches (config.degradation.where='host') are placed on the mesh as
they come. Device batches (where='device': HR windows, or the synthetic camera's
shots, with their parameters) go through a jitted stage first, eq. (1) on the
device, and reach the step degraded:

  host: HR windows or shots + parameters -> device: [render ->] eq. (1) up to the
  codec, per window -> the step.

With the video codec in the mix, no codec runs on an accelerator, so those batches
make a round trip before their step:

  ... -> device: eq. (1) up to the codec -> host: x264 on the windows drawn for
  it (a thread pool) -> device: the step, on degraded windows.

Only the small LQ windows travel back and forth. Batches are staged by a thread
of their own, ahead of the step: the host compresses them while the step runs,
and on a CPU backend XLA runs the stage beside the step, not after it.
Each window is still a pure function of (seed, example index): runs stay
deterministic and resume exactly.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
import concurrent.futures
import functools
import queue
import threading
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from jax.sharding import Mesh, PartitionSpec as P

from clarity_jax import data
from clarity_jax.data import on_device
from clarity_jax import sharding

HostBatch = Mapping[str, np.ndarray]


def codec_on_host(config: ml_collections.ConfigDict) -> bool:
  """Whether batches make the round trip: eq. (1) on the device, the codec in the mix."""
  return (data.degrade_on(config) == 'device'
          and config.degradation.video_codec_prob > 0)


def step_config(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
  """The config the train step is compiled for: device batches arrive degraded
  (DeviceStage), laid out as host-degraded ones."""
  if data.degrade_on(config) != 'device':
    return config
  out = config.copy_and_resolve_references()
  out.degradation.where = 'host'
  return out


class DeviceStage:
  """Eq. (1) of one batch on the device: start() queues it, finish() returns the
  batch the step trains on, after x264 on the host for the codec's windows."""

  def __init__(self, config: ml_collections.ConfigDict, mesh: Mesh,
               workers: int | None = None):
    self._mesh = mesh
    self._num_neighbors = config.num_neighbors
    self._codec = config.degradation.video_codec
    photos = on_device.camera_photos(config)
    # The synthetic camera's photographs, on every device once (34 MB as uint8).
    self._photos = None if photos is None else jax.device_put(photos,
                                                              sharding.replicated(mesh))
    self._on_host = codec_on_host(config)
    # Whole windows per device, each device its own (with a 'space' axis > 1 its
    # group repeats the work). Manual partitioning, not XLA's: left to the SPMD
    # partitioner on a ('data', 'space') mesh, the blur's FFT was given a layout
    # XLA:CPU rejects (RET_CHECK in fft_thunk, jax 0.10), and per-window work gains
    # nothing from splitting rows.
    by_window = P(sharding.DATA)
    per_window = jax.shard_map(functools.partial(on_device.degrade, config),
                               mesh=mesh, in_specs=(by_window,), out_specs=by_window,
                               check_vma=False)
    self._render = jax.jit(jax.shard_map(
        functools.partial(on_device.render, config), mesh=mesh,
        in_specs=(by_window, P()), out_specs=by_window, check_vma=False))

    def stage(batch):
      targets, windows = per_window(batch)
      if self._on_host:  # the codec's windows go to the host, as the planes x264 reads
        return sharding.constrain_batch(mesh, targets), (windows, on_device.window_planes(windows))
      return sharding.constrain_batch(
          mesh, on_device.training_pairs(targets, windows, self._num_neighbors)), None

    def merge(targets, windows, planes, crfs):
      """The codec's windows (planes back from x264) among the others -> the batch."""
      coded = on_device.window_rgb(planes, *windows.shape[2:4])
      windows = jnp.where((crfs >= 0)[:, None, None, None, None], coded, windows)
      return sharding.constrain_batch(
          mesh, on_device.training_pairs(targets, windows, self._num_neighbors))

    self._stage = jax.jit(stage)
    self._merge = jax.jit(merge)
    # x264 runs single-threaded (codecs.X264_OPTIONS) and PyAV releases the GIL.
    self._pool = concurrent.futures.ThreadPoolExecutor(
        workers or data.available_cores(), thread_name_prefix='x264')

  def start(self, host_batch: HostBatch) -> tuple[HostBatch, Any]:
    inputs = sharding.global_batch(
        self._mesh, {k: v for k, v in host_batch.items() if k != 'codec_crf'}, by_rows=False)
    if self._photos is not None:  # the synthetic camera's shots: render them first
      inputs = self._render(inputs, self._photos)
    return host_batch, self._stage(inputs)

  def host_planes(self, started: tuple[HostBatch, Any]) -> np.ndarray:
    """This host's windows of a started batch, as yuv420p planes [B, T', 3H/2, W]
    (waits for its degradation only: the step queued after it runs on)."""
    return sharding.local_rows(started[1][1][1])

  def compress(self, planes: np.ndarray, crfs: np.ndarray) -> np.ndarray:
    """The planes of the windows with a CRF (>= 0) through the codec, as
    degradations.compress_window does on the host path (x264 alone)."""
    rows = np.flatnonzero(crfs >= 0)
    planes = np.array(planes)  # writable
    done = self._pool.map(
        lambda i: data.video_codec_yuv(planes[i], int(crfs[i]), self._codec), rows)
    for i, window in zip(rows, done):
      planes[i] = window
    return planes

  def finish(self, started: tuple[HostBatch, Any]) -> dict[str, jax.Array]:
    host_batch, (batch, codec) = started
    if codec is None:
      return batch
    crfs = host_batch['codec_crf']
    planes = self.compress(self.host_planes(started), crfs)
    placed = sharding.global_batch(self._mesh, {'planes': planes, 'crf': crfs}, by_rows=False)
    return self._merge(batch, codec[0], placed['planes'], placed['crf'])

  def close(self) -> None:
    self._pool.shutdown(wait=False, cancel_futures=True)


def batches(config: ml_collections.ConfigDict, mesh: Mesh,
            host_batches: Iterator[HostBatch]) -> Iterator[dict[str, Any]]:
  """The loader's batches, placed on `mesh`, ready for step_config(config)'s step.
  Closing it closes `host_batches` (the loader's threads end)."""
  try:
    yield from (_host_batches if data.degrade_on(config) != 'device' else _device_batches)(
        config, mesh, host_batches)
  finally:
    getattr(host_batches, 'close', lambda: None)()


def _host_batches(config: ml_collections.ConfigDict, mesh: Mesh,
                  host_batches: Iterator[HostBatch]) -> Iterator[dict[str, Any]]:
  del config
  for host_batch in host_batches:
    yield sharding.global_batch(mesh, host_batch)


def _device_batches(config: ml_collections.ConfigDict, mesh: Mesh,
                    host_batches: Iterator[HostBatch]) -> Iterator[dict[str, Any]]:
  """The staged batches, made in a thread of their own ahead of the step (one
  ready, one waiting, the next one started).

  Its own thread, not the consumer's: XLA:CPU runs the programs one Python thread
  dispatches in order, one at a time, and programs from two threads side by side.
  Dispatched from the step's thread, the stage ran after the step on a CPU, not
  beside it (docs/performance.md). On an accelerator the thread keeps the step's
  dispatch from waiting on x264.
  """
  yield from _ahead(_staged_batches(config, mesh, host_batches))


def _staged_batches(config: ml_collections.ConfigDict, mesh: Mesh,
                    host_batches: Iterator[HostBatch]) -> Iterator[dict[str, Any]]:
  stage = DeviceStage(config, mesh)
  try:
    started = stage.start(next(host_batches))
    while True:
      batch = stage.finish(started)
      nxt = next(host_batches, None)
      if nxt is None:
        yield batch
        return
      started = stage.start(nxt)  # queued before `batch` is handed on
      yield batch
  finally:
    stage.close()


_END = object()


def _ahead(items: Iterator[Any], depth: int = 1) -> Iterator[Any]:
  """`items`, produced by a thread up to `depth` ahead of the consumer; its
  errors are raised to the consumer, and closing this closes `items` (in the
  thread that runs it) before returning.

  Written here, not taken from a library: flax's prefetch_to_device is for pmap,
  and tf.data must not be needed on this path.
  """
  ready: queue.Queue = queue.Queue(maxsize=depth)
  stop = threading.Event()

  def put(item: Any) -> bool:
    while not stop.is_set():
      try:
        ready.put(item, timeout=0.1)
        return True
      except queue.Full:
        pass
    return False

  def produce() -> None:
    try:
      for item in items:
        if not put((item, None)):
          return
      put((_END, None))
    except BaseException as e:  # pylint: disable=broad-except  # the consumer re-raises it
      put((_END, e))
    finally:
      getattr(items, 'close', lambda: None)()

  thread = threading.Thread(target=produce, name='device-stage', daemon=True)
  thread.start()
  try:
    while True:
      item, error = ready.get()
      if error is not None:
        raise error
      if item is _END:
        return
      yield item
  finally:
    stop.set()
    thread.join()
