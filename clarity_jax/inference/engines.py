"""The runtimes a Restorer can run its tiles on: JAX (XLA), ONNX Runtime, OpenVINO.

`jax` runs the bundle's parameters through the Flax model; the other two run the
graph that `export --format=onnx` wrote into the bundle (BUNDLE/onnx, onnx_export.py),
for machines where an inference runtime beats XLA:CPU (docs/performance.md). Each takes the same tiles and gives the same restored tiles: [n, 2K+1, h, w, 3] float32 in
[0, 1] -> [n, s h, s w, 3] clipped to [0, 1], with a 4th channel, the error scale b,
for the uncertainty head. The runtimes are optional extras: `pip install -e
".[deploy]"`.
"""

from __future__ import annotations

import collections
import importlib
import os
from pathlib import Path
from typing import Any, Callable

import numpy as np

from clarity_jax.inference import bundle as bundle_lib

ENGINES = ('jax', 'onnxruntime', 'openvino')
_EXTRA = 'pip install -e ".[deploy]"'
ONNX_FOLDER = 'onnx'

Engine = Callable[[np.ndarray], np.ndarray]
# What each runtime computes the float32 graph in.
# int8 runs the int8 graph (export --int8_calibration), on OpenVINO only: ONNX Runtime
# 1.32 either fails to optimise it or runs it slower than float32 (docs/performance.md).
PRECISIONS = {'onnxruntime': ('float32',), 'openvino': ('float32', 'bfloat16', 'int8')}
_OPENVINO_PRECISION = {'float32': 'f32', 'bfloat16': 'bf16', 'int8': 'f32'}
# Input shapes whose compiled programs an OpenVINO engine keeps (a few MB each).
_OPENVINO_PROGRAMS = 4


def _import(engine: str) -> Any:
  try:
    return importlib.import_module(engine)
  except ImportError as e:
    raise bundle_lib.BundleError(f'--engine={engine}', f'needs the {engine} package, '
                                 f'which is not installed ({e}); install the extra: '
                                 f'{_EXTRA}') from None


def graph_path(path: str | os.PathLike, uncertainty: bool, precision: str,
               part: str = 'whole') -> Path:
  """BUNDLE/onnx/<graph> of the head choice, precision and part, once it is there."""
  name = graph_name(uncertainty, precision, part)
  graph = Path(path) / ONNX_FOLDER / name
  if not graph.is_file():
    how = ' --int8_calibration=TRAINING_CLIPS' if precision == 'int8' else ''
    raise bundle_lib.BundleError(
        path, f'has no ONNX graph {ONNX_FOLDER}/{name}; write one: python -m '
        f'clarity_jax.export --bundle={path} --output=NEW_BUNDLE --format=onnx{how}')
  return graph


def graph_name(uncertainty: bool, precision: str = 'float32', part: str = 'whole') -> str:
  """The file of a head choice, precision and part (as onnx_export writes them):
  restore[_uncertainty][_int8].onnx whole; align.onnx and
  restore_aligned[_uncertainty].onnx, the network cut after the warp."""
  if part == 'align':
    return 'align.onnx'
  stem = ('restore_aligned' if part == 'rest' else 'restore') + (
      '_uncertainty' if uncertainty else '')
  return f'{stem}_int8.onnx' if precision == 'int8' else f'{stem}.onnx'


def _onnxruntime(ort: Any, graph: Path, threads: int, precision: str
                 ) -> tuple[Callable[..., list[np.ndarray]], dict[str, str]]:
  del precision  # float32 only (PRECISIONS)
  options = ort.SessionOptions()
  options.intra_op_num_threads = threads  # 0: every core
  options.log_severity_level = 3  # warnings about unused initialisers are noise
  session = ort.InferenceSession(str(graph), options, providers=['CPUExecutionProvider'])
  names = [i.name for i in session.get_inputs()]
  return (lambda *inputs: session.run(None, dict(zip(names, inputs))),
          session.get_modelmeta().custom_metadata_map)


def _openvino(ov: Any, graph: Path, threads: int, precision: str
              ) -> tuple[Callable[..., list[np.ndarray]], dict[str, str]]:
  core = ov.Core()
  model = core.read_model(str(graph))
  meta = {k: model.get_rt_info(['framework', k]).astype(str)
          for k in ('params_sha256', 'size_multiple') if model.has_rt_info(['framework', k])}
  # Always said: OpenVINO's CPU plugin otherwise computes in bfloat16 wherever the
  # processor has it, whatever the graph's float32.
  config: dict[str, Any] = {'INFERENCE_PRECISION_HINT': _OPENVINO_PRECISION[precision]}
  if threads:
    config['INFERENCE_NUM_THREADS'] = threads
  # Compiled once per input shape, with that shape fixed: OpenVINO then plans memory
  # and picks kernels for it, 25 % faster than the graph's symbolic sizes
  # (docs/performance.md). Every tile of a video has one shape (restorer.py).
  programs: collections.OrderedDict[tuple, tuple[Any, Any]] = collections.OrderedDict()

  def run(*inputs: np.ndarray) -> list[np.ndarray]:
    shapes = tuple(x.shape for x in inputs)
    if shapes not in programs:
      fixed = core.read_model(str(graph))
      fixed.reshape({i.get_any_name(): list(x.shape) for i, x in zip(fixed.inputs, inputs)})
      compiled = core.compile_model(fixed, 'CPU', config)
      programs[shapes] = compiled, compiled.create_infer_request()
      while len(programs) > _OPENVINO_PROGRAMS:  # a folder of images of many sizes
        programs.popitem(last=False)
    compiled, request = programs[shapes]
    results = request.infer(dict(enumerate(inputs)))
    return [results[o] for o in compiled.outputs]
  return run, meta


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
               uncertainty: bool = False, threads: int = 0, precision: str = 'float32'):
    if engine not in ENGINES[1:]:
      raise ValueError(f'OnnxEngine: engine must be one of {ENGINES[1:]}, got {engine!r}')
    if precision not in PRECISIONS[engine]:
      raise bundle_lib.BundleError(f'--engine={engine}', f'computes in '
                                   f'{" or ".join(PRECISIONS[engine])}, not {precision}')
    runtime = _import(engine)
    self.scale, self.uncertainty, self.name = info.model.scale, uncertainty, engine
    opened = _onnxruntime if engine == 'onnxruntime' else _openvino
    # The network cut after the warp (align, then rest) for bfloat16: the warp's half
    # in float32, as its sample positions need more than bfloat16's 8 bits. float32
    # runs the whole graph, or the two halves where only they are there (the shipped
    # model carries the halves alone).
    self._align = None
    part = 'whole'
    warps = info.model.use_alignment and info.model.num_neighbors > 0
    whole = Path(path) / ONNX_FOLDER / graph_name(uncertainty, precision)
    if warps and (precision == 'bfloat16' or (precision == 'float32' and not whole.is_file())):
      graph = graph_path(path, uncertainty, 'float32', 'align')
      self._align, meta = opened(runtime, graph, threads, 'float32')
      _check_metadata(graph, meta, info)
      part = 'rest'
    self.graph = graph_path(path, uncertainty, precision, part)
    self._run, meta = opened(runtime, self.graph, threads, precision)
    self.multiple = _check_metadata(self.graph, meta, info)

  def __call__(self, lq: np.ndarray) -> np.ndarray:
    n, _, h, w, _ = lq.shape
    m, s = self.multiple, self.scale
    pads = ((0, 0), (0, 0), (0, -h % m), (0, -w % m), (0, 0))
    padded = np.ascontiguousarray(np.pad(lq, pads, mode='edge'), np.float32)
    tiles = []
    for window in padded:  # the graph's batch is 1
      inputs = [window[None]]
      if self._align is not None:
        inputs.insert(0, self._align(window[None])[0])
      out = self._run(*inputs)
      restored = np.clip(out[0][:, :s * h, :s * w], 0.0, 1.0)
      if self.uncertainty:
        restored = np.concatenate([restored, out[1][:, :s * h, :s * w, None]], axis=-1)
      tiles.append(restored)
    return np.concatenate(tiles)
