"""The runtimes a Restorer can run its tiles on: JAX (XLA), ONNX Runtime, OpenVINO.

`jax` runs the bundle's parameters through the Flax model; the other two run the
graph that `export --format=onnx` wrote into the bundle (BUNDLE/onnx, onnx_export.py),
for machines where an inference runtime beats XLA:CPU (docs/performance.md). Each takes the same tiles and gives the same restored tiles: [n, 2K+1, h, w, 3] float32 in
[0, 1] -> [n, s h, s w, 3] clipped to [0, 1], with a 4th channel, the error scale b,
for the uncertainty head. The runtimes are optional extras: `pip install -e
".[deploy]"`.
"""

from __future__ import annotations

import importlib
import os
from pathlib import Path
from typing import Any, Callable

import numpy as np

from clarity_jax.inference import bundle as bundle_lib

ENGINES = ('jax', 'onnxruntime', 'openvino')
_EXTRA = 'pip install -e ".[deploy]"'
ONNX_FOLDER = 'onnx'
_GRAPHS = {False: 'restore.onnx', True: 'restore_uncertainty.onnx'}

Engine = Callable[[np.ndarray], np.ndarray]


def _import(engine: str) -> Any:
  try:
    return importlib.import_module(engine)
  except ImportError as e:
    raise bundle_lib.BundleError(f'--engine={engine}', f'needs the {engine} package, '
                                 f'which is not installed ({e}); install the extra: '
                                 f'{_EXTRA}') from None


def graph_path(path: str | os.PathLike, info: bundle_lib.BundleInfo, uncertainty: bool
               ) -> Path:
  """BUNDLE/onnx/<graph>, once it is there and was exported from these weights."""
  graph = Path(path) / ONNX_FOLDER / _GRAPHS[uncertainty]
  if not graph.is_file():
    raise bundle_lib.BundleError(
        path, f'has no ONNX graph ({ONNX_FOLDER}/{_GRAPHS[uncertainty]}); write one: '
        f'python -m clarity_jax.export --bundle={path} --output=NEW_BUNDLE --format=onnx')
  return graph


def _onnxruntime(ort: Any, graph: Path, threads: int
                 ) -> tuple[Callable[[np.ndarray], list[np.ndarray]], dict[str, str]]:
  options = ort.SessionOptions()
  options.intra_op_num_threads = threads  # 0: every core
  options.log_severity_level = 3  # warnings about unused initialisers are noise
  session = ort.InferenceSession(str(graph), options, providers=['CPUExecutionProvider'])
  return (lambda lq: session.run(None, {'lq': lq}),
          session.get_modelmeta().custom_metadata_map)


def _openvino(ov: Any, graph: Path, threads: int
              ) -> tuple[Callable[[np.ndarray], list[np.ndarray]], dict[str, str]]:
  core = ov.Core()
  model = core.read_model(str(graph))
  meta = {k: model.get_rt_info(['framework', k]).astype(str)
          for k in ('params_sha256', 'size_multiple') if model.has_rt_info(['framework', k])}
  # float32, as the graph says: OpenVINO's CPU plugin otherwise computes in bfloat16
  # wherever the processor has it.
  config: dict[str, Any] = {'INFERENCE_PRECISION_HINT': 'f32'}
  if threads:
    config['INFERENCE_NUM_THREADS'] = threads
  compiled = core.compile_model(model, 'CPU', config)
  request = compiled.create_infer_request()
  return (lambda lq: [request.infer({0: lq})[o] for o in compiled.outputs]), meta


def _check_metadata(graph: Path, meta: dict[str, str], info: bundle_lib.BundleInfo) -> int:
  """The graph's size multiple, once its metadata names this bundle's weights."""
  if meta.get('params_sha256') != info.params_sha256:
    raise bundle_lib.BundleError(graph, f"was exported from weights sha256 "
                                 f"{str(meta.get('params_sha256'))[:12]}..., not this "
                                 f"bundle's {info.params_sha256[:12]}...: export it again")
  return int(meta['size_multiple'])


class OnnxEngine:
  """Runs BUNDLE/onnx's graph in ONNX Runtime or OpenVINO, one window at a time.

  The graph takes heights and widths that are multiples of the model's padding
  multiple: tiles are edge-padded to it here, as the JAX model pads itself, so the
  pixels are the same, and the outputs cropped back.
  """

  def __init__(self, path: str | os.PathLike, info: bundle_lib.BundleInfo, engine: str,
               uncertainty: bool = False, threads: int = 0):
    if engine not in ENGINES[1:]:
      raise ValueError(f'OnnxEngine: engine must be one of {ENGINES[1:]}, got {engine!r}')
    runtime = _import(engine)
    self.graph = graph_path(path, info, uncertainty)
    self.scale, self.uncertainty, self.name = info.model.scale, uncertainty, engine
    opened = _onnxruntime if engine == 'onnxruntime' else _openvino
    self._run, meta = opened(runtime, self.graph, threads)
    self.multiple = _check_metadata(self.graph, meta, info)

  def __call__(self, lq: np.ndarray) -> np.ndarray:
    n, _, h, w, _ = lq.shape
    m, s = self.multiple, self.scale
    pads = ((0, 0), (0, 0), (0, -h % m), (0, -w % m), (0, 0))
    padded = np.ascontiguousarray(np.pad(lq, pads, mode='edge'), np.float32)
    tiles = []
    for window in padded:  # the graph's batch is 1
      out = self._run(window[None])
      restored = np.clip(out[0][:, :s * h, :s * w], 0.0, 1.0)
      if self.uncertainty:
        restored = np.concatenate([restored, out[1][:, :s * h, :s * w, None]], axis=-1)
      tiles.append(restored)
    return np.concatenate(tiles)
