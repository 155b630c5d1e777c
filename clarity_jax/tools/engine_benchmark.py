"""Inference engines compared (benchmark --what=engines): ms per frame of a bundle's
model alone, per engine x precision x threads, and enhance's frames/s end to end.

Each configuration runs in a process of its own, pinned to its first `threads` cores
(XLA sizes its thread pool by the cores a process may use, once, at start), on whole
frames of settings.height x settings.width (no tiles), one window per call as the
ONNX graph takes them. The engines get the same frames, restored in order as enhance
streams them: a real photograph panning.

  python -m clarity_jax.tools.engine_benchmark '{"bundle": ..., "engine": ...}'  # one row
"""

from __future__ import annotations

import json
import os
from pathlib import Path
import re
import subprocess
import sys
import tempfile
import time
from typing import Any

import ml_collections
import numpy as np

from clarity_jax.inference import bundle as bundle_lib
from clarity_jax.inference import engines
from clarity_jax.inference import export
from clarity_jax.inference import restorer
from clarity_jax.inference import shipped
from clarity_jax.tools.benchmark_settings import Settings

# (engine, precision) pairs; each runs with 1 and with 2 threads. The int8 ones need
# the bundle's int8 graph (export --int8_calibration) and are left out without it.
CONFIGURATIONS = (('jax', 'float32'), ('jax', 'bfloat16'), ('onnxruntime', 'float32'),
                  ('openvino', 'float32'), ('openvino', 'bfloat16'), ('openvino', 'int8'))
THREADS = (1, 2)


def _frames(n: int, h: int, w: int) -> list[np.ndarray]:
  """n [h, w, 3] float32 frames: skimage's astronaut panning 3 pixels a frame."""
  import cv2  # pylint: disable=g-import-not-at-top
  import skimage.data  # pylint: disable=g-import-not-at-top
  img = cv2.resize(skimage.data.astronaut(), (w + 3 * n, h + 3 * n),
                   interpolation=cv2.INTER_AREA).astype(np.float32) / 255.0
  return [np.ascontiguousarray(img[3 * i:3 * i + h, 3 * i:3 * i + w]) for i in range(n)]


def one_row(bundle: str, engine: str, precision: str, threads: int, height: int,
            width: int, steps: int, warmup: int, encoder_cache: bool = False
            ) -> dict[str, Any]:
  """One configuration, in this process (already pinned by the caller): the frames
  of a clip restored in order, one window per call, as enhance streams them; with
  `encoder_cache`, each frame encoded once (a model that warps features)."""
  r, info = restorer.Restorer.from_bundle(
      bundle, precision, engine=engine, tile=0, batch=1,
      threads=0 if engine == 'jax' else threads, encoder_cache=encoder_cache)
  if encoder_cache and r.feature_cache is None:
    raise ValueError(f'{bundle}: no encoder cache on --engine={engine} '
                     f'--dtype={precision} (the model warps pixels, or the graph is whole)')
  # K frames past the last timed window: every timed window reads a new frame (the
  # reflected windows at a clip's end encode nothing new).
  k = info.model.num_neighbors
  stream = restorer.enhance_frames(r, _frames(warmup + steps + 2 * k, height, width))
  for _ in range(warmup):
    next(stream)
  start = time.perf_counter()
  for _ in range(steps):
    next(stream)
  seconds = (time.perf_counter() - start) / steps
  return {'engine': engine, 'precision': precision, 'threads': threads,
          'encoder_cache': encoder_cache, 'ms_per_frame': seconds * 1e3,
          'input': [height, width], 'output': [info.model.scale * height,
                                               info.model.scale * width]}


def _run_pinned(args: dict[str, Any]) -> dict[str, Any]:
  env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL='2')
  proc = subprocess.run([sys.executable, '-m', 'clarity_jax.tools.engine_benchmark',
                         json.dumps(args)], env=env, capture_output=True, text=True,
                        check=False)
  if proc.returncode:
    raise RuntimeError(f'engine benchmark {args}: {proc.stderr.strip()[-2000:]}')
  return json.loads(proc.stdout.strip().splitlines()[-1])


def _bundle_with_graph(bundle: str, tmp: Path) -> str:
  """`bundle` if it holds ONNX graphs, else a copy exported with them under tmp."""
  if (Path(bundle) / engines.ONNX_FOLDER).is_dir():
    return bundle
  export.export(None, tmp / 'bundle', formats=['onnx'], source_bundle=bundle)
  return str(tmp / 'bundle')


def _enhance_fps(bundle: str, engine: str, precision: str, clip: str, tmp: Path) -> float:
  """enhance's own frames/s on `clip`, decode and encode included, on every core."""
  out = tmp / f'{engine}_{precision}.mp4'
  proc = subprocess.run([sys.executable, '-m', 'clarity_jax.enhance', f'--bundle={bundle}',
                         f'--input={clip}', f'--output={out}', f'--engine={engine}',
                         f'--dtype={precision}', '--noprogress', '--overwrite'],
                        env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL='2'), capture_output=True,
                        text=True, check=False)
  found = re.search(r'([0-9.]+) frames/s', proc.stdout)
  if proc.returncode or not found:
    raise RuntimeError(f'enhance --engine={engine}: {proc.stderr.strip()[-2000:]}')
  return float(found.group(1))


def engine_table(config: ml_collections.ConfigDict, settings: Settings) -> dict[str, Any]:
  """The table: one row per engine x precision x threads, and enhance end to end on
  settings.input (a real clip) when given. The bundle is settings.bundle, or the
  shipped model; `config` is not used (the bundle fixes the model)."""
  del config
  bundle = settings.bundle or str(shipped.bundle_path())
  with tempfile.TemporaryDirectory() as tmp:
    bundle = _bundle_with_graph(bundle, Path(tmp))
    has_int8 = (Path(bundle) / 'onnx' / engines.graph_name(False, 'int8')).is_file()
    configurations = [c for c in CONFIGURATIONS if c[1] != 'int8' or has_int8]
    # With and without the encoder cache where the model warps features (int8 runs
    # the whole graph: no cache).
    caches = lambda precision: (False, True) if warps_features and precision != 'int8' else (
        False,)
    warps_features = bundle_lib.read_info(bundle).model.warp_features
    rows = [_run_pinned(dict(bundle=bundle, engine=engine, precision=precision,
                             threads=threads, height=settings.height, width=settings.width,
                             steps=settings.num_batches, warmup=settings.warmup,
                             encoder_cache=cache))
            for engine, precision in configurations for threads in THREADS
            for cache in caches(precision)]
    # Every precision enhance offers: float32 on each engine, and OpenVINO's bfloat16
    # (the warp in float32; int8 failed the 0.05 dB rule on validate).
    offered = [(engine, 'float32') for engine in engines.ENGINES] + [('openvino', 'bfloat16')]
    end_to_end = ([{'engine': engine, 'precision': precision, 'frames_per_s': _enhance_fps(
        bundle, engine, precision, settings.input, Path(tmp))}
                   for engine, precision in offered] if settings.input else None)
  return {'what': 'engines', 'date': time.strftime('%Y-%m-%d'),
          'bundle': settings.bundle or 'shipped', 'cpu': _cpu_name(), 'rows': rows,
          'encoder_cache': ('each frame encoded once where the row says so' if warps_features
                            else 'not possible: this network warps pixels before encoding'),
          'enhance_frames_per_s': end_to_end,
          'enhance_input': settings.input or None}


def _cpu_name() -> str:
  try:
    for line in Path('/proc/cpuinfo').read_text().splitlines():
      if line.startswith('model name'):
        return line.split(':', 1)[1].strip()
  except OSError:
    pass
  return 'unknown'


def main() -> None:
  args = json.loads(sys.argv[1])
  # Before JAX starts: XLA sizes its thread pool by the cores this process may use.
  os.sched_setaffinity(0, sorted(os.sched_getaffinity(0))[:args['threads']])
  print(json.dumps(one_row(**args)), flush=True)


if __name__ == '__main__':
  main()
