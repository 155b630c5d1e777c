"""Benchmarks of the model on the accelerator: the train step, inference, what the
uncertainty head adds, the time per model stage, and the chip's matmul peak, each
returning a dict of JSON-serialisable results (entries of cli/benchmark.py's
BENCHMARKS). TensorFlow-free: they run on the accelerator machines, which have none.
"""

from __future__ import annotations

import os
import resource
import statistics
import tempfile
import time
from typing import Any, Callable

from flax import nnx
import jax
import ml_collections

from clarity_jax import sharding
from clarity_jax.models import claritynet
from clarity_jax.tools import profiling
from clarity_jax.tools.benchmark_settings import Settings
from clarity_jax.train import state as state_lib
from clarity_jax.train import step as ts


def _flops(compiled: Any) -> float:
  """FLOPs of one call of a compiled program, from XLA's cost analysis."""
  cost = compiled.cost_analysis()
  if isinstance(cost, (list, tuple)):  # older JAX: one dict per program
    cost = cost[0]
  return float(cost.get('flops', 0.0))


def _timed(fn: Callable[[], Any], steps: int, warmup: int) -> float:
  """Seconds per call, after warmup calls; waits for the device each time."""
  for _ in range(warmup):
    jax.block_until_ready(fn())
  start = time.perf_counter()
  for _ in range(steps):
    out = fn()
  jax.block_until_ready(out)
  return (time.perf_counter() - start) / steps


def device_info() -> dict[str, Any]:
  device = jax.devices()[0]
  kind = device.device_kind
  peak = next((v for k, v in PEAK_TFLOPS.items() if k.lower() in kind.lower()), None)
  return {'platform': device.platform, 'device_kind': kind,
          'device_count': jax.device_count(), 'process_count': jax.process_count(),
          'jax_version': jax.__version__,
          'datasheet_peak_tflops_bf16': peak[0] if peak else None,
          'datasheet_peak_tflops_fp32': peak[1] if peak else None}


def peak_memory_bytes() -> int | None:
  """Peak device memory on accelerators; peak resident memory of this process on CPU."""
  stats = jax.devices()[0].memory_stats() or {}
  if 'peak_bytes_in_use' in stats:
    return int(stats['peak_bytes_in_use'])
  return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux: KiB


def matmul_peak(dtype: str, n: int | None = None, steps: int = 10) -> float:
  """Measured TFLOP/s of a large square matmul: the chip's practical peak, on the spot."""
  n = n or (8192 if jax.default_backend() != 'cpu' else 1024)
  a = jax.random.normal(jax.random.key(0), (n, n), dtype)
  b = jax.random.normal(jax.random.key(1), (n, n), dtype)
  f = jax.jit(lambda x, y: x @ y)
  seconds = _timed(lambda: f(a, b), steps, 2)
  return 2 * n ** 3 / seconds / 1e12


def compiled_memory(compiled: Any) -> dict[str, int]:
  """XLA's buffer assignment for one compiled program, in bytes.

  Device-independent given the program: what donation (`alias`: outputs written
  into donated inputs) and bfloat16 (`temp`: activations kept for the backward
  pass) buy shows here even on a CPU.
  """
  stats = compiled.memory_analysis()
  if stats is None:
    return {}
  return {k: int(getattr(stats, f'{k}_size_in_bytes'))
          for k in ('argument', 'output', 'alias', 'temp')}


def train_program(config: ml_collections.ConfigDict
                  ) -> tuple[Any, Callable[[], Any], dict[str, Any]]:
  """The compiled train step on a synthetic batch made on the device.

  Returns (compiled, run, info): run() performs one step (the state is donated
  and carried over between calls) and returns the loss.
  """
  config = ml_collections.ConfigDict(config.to_dict())
  config.degradation.where = 'host'  # synthetic LQ windows: the model step alone
  mesh = sharding.make_mesh(config.mesh.space)
  graphdef = state_lib.model_graphdef(config)
  start = time.perf_counter()
  state = jax.block_until_ready(state_lib.create_state(config, mesh))
  init_s = time.perf_counter() - start
  shapes = ts.batch_shapes(config)
  batch = jax.jit(lambda: {k: jax.random.uniform(jax.random.key(i), v)
                           for i, (k, v) in enumerate(shapes.items())},
                  out_shardings=sharding.batch_shardings(mesh, shapes))()
  start = time.perf_counter()
  compiled = ts.jit_train_step(config, graphdef, mesh).lower(state, batch, None).compile()
  compile_s = time.perf_counter() - start
  holder = [state]

  def run():
    holder[0], metrics = compiled(holder[0], batch, None)
    return metrics['loss']

  info = {'variant': config.model.variant, 'dtype': config.model.dtype,
          'batch': config.batch_size, 'K': config.num_neighbors,
          'crop': config.data.crop_size, 'scale': config.scale,
          'init_s': init_s, 'compile_s': compile_s}  # start-up: init (compiled) and step
  return compiled, run, info


def step_throughput(config: ml_collections.ConfigDict, settings: Settings) -> dict[str, Any]:
  """Train step time, windows/s and achieved FLOP/s on synthetic batches made on device
  (the model's own speed: no input pipeline, no degradation)."""
  compiled, run, info = train_program(config)
  flops = _flops(compiled)
  seconds = _timed(run, settings.num_batches, settings.warmup)
  return {'what': 'step', **info,
          'step_ms': seconds * 1e3, 'windows_per_s': info['batch'] / seconds,
          'gflops_per_step': flops / 1e9, 'achieved_tflops': flops / seconds / 1e12,
          'peak_memory_bytes': peak_memory_bytes(), 'xla_memory': compiled_memory(compiled)}


def inference_program(config: ml_collections.ConfigDict, dtype: str, settings: Settings
                      ) -> tuple[Any, Callable[[], Any], dict[str, Any]]:
  """The compiled forward pass on settings.batch windows of height x width.

  Returns (compiled, run, info) as train_program.
  """
  h, w, b = settings.height, settings.width, settings.batch
  t = 2 * config.num_neighbors + 1
  lq = jax.random.uniform(jax.random.key(0), (b, t, h, w, 3))
  model = claritynet.model_from_config(config, nnx.Rngs(0), dtype=dtype)
  graphdef, params = nnx.split(model)
  # With the head, the frame and its error-scale map (what enhance --uncertainty runs).
  forward = ((lambda p, x: nnx.merge(graphdef, p).with_uncertainty(x)) if model.has_uncertainty
             else (lambda p, x: nnx.merge(graphdef, p)(x)))
  compiled = jax.jit(forward).lower(params, lq).compile()
  info = {'variant': config.model.variant, 'dtype': dtype, 'batch': b,
          'uncertainty': model.has_uncertainty,
          'K': config.num_neighbors, 'scale': config.scale, 'input': [h, w],
          'output': [config.scale * h, config.scale * w]}
  return compiled, lambda: compiled(params, lq), info


def inference_throughput(config: ml_collections.ConfigDict, settings: Settings,
                         dtypes: tuple[str, ...] = ('float32', 'bfloat16')) -> dict[str, Any]:
  """Frames/s of the model alone, (h, w) -> (s h, s w), in float32 and bfloat16."""
  out: dict[str, Any] = {'what': 'inference'}
  for dtype in dtypes:
    compiled, run, info = inference_program(config, dtype, settings)
    out.update({k: v for k, v in info.items() if k != 'dtype'})
    b = info['batch']
    seconds = _timed(run, settings.num_batches, settings.warmup)
    flops = _flops(compiled)
    out[dtype] = {'frames_per_s': b / seconds, 'ms_per_frame': seconds / b * 1e3,
                  'gflops_per_frame': flops / b / 1e9,
                  'achieved_tflops': flops / seconds / 1e12,
                  'xla_memory': compiled_memory(compiled)}
  out['peak_memory_bytes'] = peak_memory_bytes()
  return out


def uncertainty_overhead(config: ml_collections.ConfigDict, settings: Settings
                         ) -> dict[str, Any]:
  """What the uncertainty head adds to inference: the model in config.model.dtype
  with and without it, timed in alternation (rounds of settings.num_batches calls;
  the median round of each), so a busy machine slows both alike."""
  programs = {}
  for with_head in (False, True):
    variant = ml_collections.ConfigDict(config.to_dict())
    variant.model.uncertainty = with_head
    programs[with_head] = inference_program(variant, config.model.dtype, settings)
  rounds = {False: [], True: []}
  for _ in range(5):
    for with_head, (_, run, _) in programs.items():
      rounds[with_head].append(_timed(run, settings.num_batches, settings.warmup))
  plain, head = (statistics.median(rounds[k]) for k in (False, True))
  flops = {k: _flops(compiled) for k, (compiled, _, _) in programs.items()}
  info = programs[True][2]
  return {'what': 'uncertainty', 'date': time.strftime('%Y-%m-%d'), 'device': device_info(),
          **{k: v for k, v in info.items() if k != 'uncertainty'},
          'ms_per_frame': {'without_head': plain / info['batch'] * 1e3,
                           'with_head': head / info['batch'] * 1e3},
          'time_overhead': head / plain - 1.0,
          'flops_overhead': flops[True] / flops[False] - 1.0}


def profile_stages(config: ml_collections.ConfigDict, settings: Settings) -> dict[str, Any]:
  """Op time per model stage (flow, warp, encoder, ...) of the train step and of
  inference in config.model.dtype, from jax.profiler traces (tools/profiling.py).
  The traces stay under settings.profile_dir for TensorBoard's profile plugin."""
  root = settings.profile_dir or tempfile.mkdtemp(prefix='clarity_profile_')
  out: dict[str, Any] = {'what': 'profile', 'date': time.strftime('%Y-%m-%d'),
                         'device': device_info()}
  for name, (compiled, run, info) in (
      ('train', train_program(config)),
      ('inference', inference_program(config, config.model.dtype, settings))):
    seconds = _timed(run, settings.num_batches, settings.warmup)
    out[name] = {**info, 'ms_per_call': seconds * 1e3,
                 **profiling.profile(compiled, run, settings.num_batches,
                                     os.path.join(root, name))}
  return out


def model_benchmarks(config: ml_collections.ConfigDict, settings: Settings) -> dict[str, Any]:
  """Everything that runs without TensorFlow: device, matmul peak, train, inference."""
  info = device_info()
  peaks = {d: matmul_peak(d) for d in ('bfloat16', 'float32')}
  train = step_throughput(config, settings)
  inference = inference_throughput(config, settings)
  compute = 'bfloat16' if config.model.dtype == 'bfloat16' else 'float32'
  train['share_of_measured_peak'] = train['achieved_tflops'] / peaks[compute]
  for dtype in ('float32', 'bfloat16'):
    inference[dtype]['share_of_measured_peak'] = (
        inference[dtype]['achieved_tflops'] / peaks[dtype])
  return {'what': 'model', 'date': time.strftime('%Y-%m-%d'), 'device': info,
          'measured_matmul_peak_tflops': peaks, 'train': train, 'inference': inference}


# Dense datasheet peaks per chip, TFLOP/s: (bfloat16, float32 without TF32).
PEAK_TFLOPS: dict[str, tuple[float, float | None]] = {
    'H200': (989.0, 67.0),
    'H100': (989.0, 67.0),
    'A100': (312.0, 19.5),
    'TPU v4': (275.0, None),
    'TPU v5 lite': (197.0, None),  # v5e
    'TPU v5p': (459.0, None),
    'TPU v5': (459.0, None),
}
