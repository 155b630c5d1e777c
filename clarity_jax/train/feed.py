"""Training batches from the loader to the step.

Host-degraded batches (config.degradation.where='host'), and device batches without
the video codec, are placed on the mesh as they come (the step degrades the latter).
With the codec in the mix (where='device', video_codec_prob > 0), no codec runs on
an accelerator, so every batch makes a round trip before its step:

  host: HR windows + parameters -> device: eq. (1) up to the codec, per window
  -> host: x264 on the windows drawn for it (a thread pool)
  -> device: the step, on degraded windows.

Only the small LQ windows travel back and forth. The degradation of batch t + 1 is
queued on the device before step t, so the host compresses it while step t runs.
Each window is still a pure function of (seed, example index): runs stay
deterministic and resume exactly.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
import concurrent.futures
import functools
from typing import Any

import jax
import ml_collections
import numpy as np
from jax.sharding import Mesh, PartitionSpec as P

from clarity_jax import data
from clarity_jax import sharding

HostBatch = Mapping[str, np.ndarray]


def codec_on_host(config: ml_collections.ConfigDict) -> bool:
  """Whether batches make the round trip: eq. (1) on the device, the codec in the mix."""
  return (data.where(config) == 'device'
          and config.degradation.video_codec_prob > 0)


def step_config(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
  """The config the train step is compiled for: after the round trip its batches
  arrive degraded, laid out as host-degraded ones."""
  if not codec_on_host(config):
    return config
  out = config.copy_and_resolve_references()
  out.degradation.where = 'host'
  return out


class CodecStage:
  """The round trip of one batch: start() queues its degradation on the device,
  finish() compresses the codec's windows on the host and places the batch."""

  def __init__(self, config: ml_collections.ConfigDict, mesh: Mesh,
               workers: int | None = None):
    self._mesh = mesh
    self._num_neighbors = config.num_neighbors
    self._codec = config.degradation.video_codec
    degrade = functools.partial(data.degrade_windows_on_device, seed=config.seed,
                                scale=config.scale)
    # Whole windows per device, as the step's own degradation (step._degrade).
    by_window = P(sharding.DATA)
    self._degrade = jax.jit(jax.shard_map(degrade, mesh=mesh, in_specs=(by_window,),
                                          out_specs=by_window, check_vma=False))
    # x264 runs single-threaded (codecs.X264_OPTIONS) and PyAV releases the GIL.
    self._pool = concurrent.futures.ThreadPoolExecutor(
        workers or data.available_cores(), thread_name_prefix='x264')

  def start(self, host_batch: HostBatch) -> tuple[HostBatch, jax.Array]:
    inputs = {k: v for k, v in host_batch.items()
              if k in ('hr_window', 'index') or k.startswith('deg_')}
    return host_batch, self._degrade(sharding.global_batch(self._mesh, inputs,
                                                           by_rows=False))

  def compress(self, windows: np.ndarray, crfs: np.ndarray) -> np.ndarray:
    """This host's degraded windows [B, T', h, w, 3], those with a CRF (>= 0)
    through the codec, as degradations.compress_window does on the host path."""
    rows = np.flatnonzero(crfs >= 0)
    windows = np.array(windows)  # writable
    done = self._pool.map(
        lambda i: data.video_codec(windows[i], int(crfs[i]), self._codec), rows)
    for i, window in zip(rows, done):
      windows[i] = window
    return windows

  def finish(self, started: tuple[HostBatch, jax.Array]) -> dict[str, jax.Array]:
    host_batch, windows = started
    # Waits for this batch's degradation only: the step queued after it runs on.
    windows = self.compress(sharding.local_rows(windows), host_batch['codec_crf'])
    return sharding.global_batch(
        self._mesh, data.training_pairs(host_batch, windows, self._num_neighbors))

  def close(self) -> None:
    self._pool.shutdown(wait=False, cancel_futures=True)


def batches(config: ml_collections.ConfigDict, mesh: Mesh,
            host_batches: Iterator[HostBatch]) -> Iterator[dict[str, Any]]:
  """The loader's batches, placed on `mesh`, ready for step_config(config)'s step."""
  if not codec_on_host(config):
    for host_batch in host_batches:
      yield sharding.global_batch(mesh, host_batch)
    return
  stage = CodecStage(config, mesh)
  try:
    started = stage.start(next(host_batches))
    while True:
      batch = stage.finish(started)
      nxt = next(host_batches, None)
      if nxt is None:
        yield batch
        return
      started = stage.start(nxt)  # queued before the consumer's step on `batch`
      yield batch
  finally:
    stage.close()
