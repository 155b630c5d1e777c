"""Benchmarks of what feeds and drains the model on the host: the training input
(loader, and eq. (1)'s device stage with its x264 round trip), training end to
end, and enhance's output encoder, each returning a dict of JSON-serialisable
results (entries of cli/benchmark.py's BENCHMARKS). Importing this module needs no
TensorFlow: clarity_jax.data imports it only when the tf.data loader runs.
"""

from __future__ import annotations

import os
import tempfile
import time
from typing import Any

import cv2
import jax
import ml_collections
import numpy as np
import skimage.data

from clarity_jax import data
from clarity_jax import sharding
from clarity_jax.data import loader
from clarity_jax.media import video_writer
from clarity_jax.tools.benchmark_settings import Settings
from clarity_jax.train import feed
from clarity_jax.train import state as state_lib
from clarity_jax.train import step as ts


def steal_seconds() -> float | None:
  """CPU time the hypervisor gave other guests so far, summed over this VM's cores
  (Linux /proc/stat; None elsewhere). A run whose steal grows was slowed by
  neighbours: its windows/s say little about the code."""
  try:
    with open('/proc/stat', encoding='ascii') as f:
      fields = f.readline().split()
    return int(fields[8]) / os.sysconf('SC_CLK_TCK')
  except (OSError, IndexError, ValueError):
    return None


def _steal_since(start: float | None) -> float | None:
  now = steal_seconds()
  return None if start is None or now is None else now - start


def train_end_to_end(config: ml_collections.ConfigDict, settings: Settings
                     ) -> dict[str, Any]:
  """Training as it runs: this host's loader (config.data.loader) feeding the jitted
  step, eq. (1) where config.degradation.where says. windows/s, and the CPU time
  per window of the process (every thread: the loader's, and on a CPU backend the
  step's)."""
  mesh = sharding.make_mesh(config.mesh.space)
  state = state_lib.create_state(config, mesh)
  step = ts.jit_train_step(feed.step_config(config), state_lib.model_graphdef(config), mesh)
  batches = feed.batches(config, mesh, data.create_train_iterator(config))
  start = time.perf_counter()
  for _ in range(max(settings.warmup, 1)):  # compiles, fills the loader's buffers
    state, metrics = step(state, next(batches), None)
  jax.block_until_ready(metrics['loss'])
  cpu = time.process_time()  # every thread of the process
  ready, steal = time.perf_counter(), steal_seconds()
  for _ in range(settings.num_batches):
    state, metrics = step(state, next(batches), None)
  jax.block_until_ready(metrics['loss'])
  seconds = time.perf_counter() - ready
  cpu = time.process_time() - cpu
  batches.close()
  windows = settings.num_batches * config.batch_size
  return {'what': 'train', 'variant': config.model.variant, 'dtype': config.model.dtype,
          'where': data.degrade_on(config),
          'loader': loader.choose(config), 'batch': config.batch_size,
          'K': config.num_neighbors, 'crop': config.data.crop_size, 'scale': config.scale,
          'source': config.data.source, 'video_codec_prob': config.degradation.video_codec_prob,
          'windows_per_s': windows / seconds, 'step_ms': seconds / settings.num_batches * 1e3,
          'cpu_ms_per_window': cpu / windows * 1e3, 'startup_s': ready - start,
          'num_batches': settings.num_batches, 'cores': data.available_cores(),
          'steal_s': _steal_since(steal)}


def output_throughput(config: ml_collections.ConfigDict, settings: Settings) -> dict[str, Any]:
  """Frames/s of enhance's host-side output path at the output size (s h, s w):
  float -> uint8 and the x264 encode of `video_writer.VideoWriter` at enhance's
  defaults. A restored video can go no faster than this, whatever the accelerator.

  The frames are a photograph panning by 3 px a frame, so x264 sees real texture
  and motion. The timed frames include the encoder's flush at the end.
  """
  s = config.scale
  h, w = s * settings.height, s * settings.width
  num_batches, warmup = settings.num_batches, settings.warmup
  n = warmup + num_batches
  photo = cv2.resize(skimage.data.astronaut(), (w + 3 * n, h), interpolation=cv2.INTER_CUBIC)
  frames = [photo[:, 3 * i:3 * i + w].astype(np.float32) / 255.0 for i in range(n)]
  out: dict[str, Any] = {'what': 'output', 'output': [h, w], 'frames': num_batches,
                         'codec': 'libx264', 'crf': video_writer.DEFAULT_CRF,
                         'cores': os.cpu_count()}
  for preset in (video_writer.DEFAULT_PRESET, 'veryfast'):  # enhance's default and --preset
    with tempfile.TemporaryDirectory() as tmp:
      writer = video_writer.VideoWriter(os.path.join(tmp, 'out.mp4'), 30, preset=preset)
      for frame in frames[:warmup]:
        writer.write(frame)
      wall, cpu = time.perf_counter(), time.process_time()
      for frame in frames[warmup:]:
        writer.write(frame)
      writer.close()
      wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
      size = os.path.getsize(os.path.join(tmp, 'out.mp4'))
    out[preset] = {'frames_per_s': num_batches / wall,
                   'cpu_ms_per_frame': cpu / num_batches * 1e3,
                   'kbytes_per_frame': size / n / 1e3}
  return out


def input_throughput(config: ml_collections.ConfigDict, settings: Settings) -> dict[str, Any]:
  """Windows/s and host CPU ms per window of the training loader on this host
  (config.data.loader; eq. (1) included when config.degradation.where is 'host').

  With where='device' and the video codec in the mix, the host also runs x264 on
  the codec's windows after the device degraded them (train/feed.py): that CPU time
  is measured on the same batches and added in host_cpu_ms_per_window.

  One process. settings.warmup batches are pulled first (building the source,
  filling the prefetch buffer, tf.data's autotuning); the timed batches may
  therefore include up to config.data.prefetch batches made during warmup: time
  many batches.
  """
  num_batches = settings.num_batches
  if num_batches < 1:
    raise ValueError(f'num_batches must be >= 1, got {num_batches}')
  steal, start = steal_seconds(), time.perf_counter()
  batches = data.create_train_iterator(config, process_index=0, process_count=1)
  for _ in range(settings.warmup):
    next(batches)
  ready, cpu = time.perf_counter(), time.process_time()  # every thread of the process
  for _ in range(num_batches):
    next(batches)
  seconds, cpu = time.perf_counter() - ready, time.process_time() - cpu
  batches.close()  # join the loader's threads now, not whenever it is collected
  windows = num_batches * config.batch_size
  codec_ms = codec_cpu_ms_per_window(config, num_batches) if feed.codec_on_host(
      config) else 0.0
  loader_ms = cpu / windows * 1e3
  return {
      'what': 'input', 'loader': loader.choose(config),
      'windows_per_s': windows / seconds, 'batches_per_s': num_batches / seconds,
      'seconds': seconds, 'startup_seconds': ready - start, 'num_batches': num_batches,
      'batch': config.batch_size, 'K': config.num_neighbors,
      'frames_per_window': 2 * config.num_neighbors + 1 + int(config.loss.temporal_weight > 0),
      'crop': config.data.crop_size, 'scale': config.scale, 'source': config.data.source,
      'degradation_where': data.degrade_on(config),
      'video_codec_prob': config.degradation.video_codec_prob,
      'num_parallel_calls': config.data.num_parallel_calls,
      'cores': data.available_cores(), 'steal_s': _steal_since(steal),
      # The process's CPU time (the loader's threads, tf.data's) per window made.
      'cpu_ms_per_window': loader_ms, 'codec_cpu_ms_per_window': codec_ms,
      'host_cpu_ms_per_window': loader_ms + codec_ms,
      'host_windows_per_s_per_core': 1e3 / (loader_ms + codec_ms)}


def codec_cpu_ms_per_window(config: ml_collections.ConfigDict, num_batches: int) -> float:
  """Host CPU ms per training window (all windows counted) of the x264 round trip of
  feed.DeviceStage: the device's degradation is run first, untimed, and x264 runs
  in this thread, timed by its own CPU clock (the loader's threads, busy making the
  next batches meanwhile, are not counted twice)."""
  mesh = sharding.make_mesh(config.mesh.space)
  stage = feed.DeviceStage(config, mesh)
  batches = data.create_train_iterator(config, process_index=0, process_count=1)
  cpu = 0.0
  try:
    for _ in range(num_batches):
      host_batch = next(batches)
      planes, crfs = stage.host_planes(stage.start(host_batch)), host_batch['codec_crf']
      start = time.thread_time()
      for i in np.flatnonzero(crfs >= 0):
        data.video_codec_yuv(planes[i], int(crfs[i]), config.degradation.video_codec)
      cpu += time.thread_time() - start
  finally:
    stage.close()
  return cpu / (num_batches * config.batch_size) * 1e3
