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
from typing import Any, Callable, Sequence

from absl import logging
import numpy as np

from clarity_jax.inference import bundle as bundle_lib

ENGINES = ('jax', 'onnxruntime', 'openvino')
_EXTRA = 'pip install -e ".[deploy]"'
ONNX_FOLDER = 'onnx'

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


def graph_inputs(part: str, warp_features: bool, num_frames: int) -> list[str]:
  """A graph's input names, in order (onnx_export.py writes them; an engine checks
  them, so a graph of another layout is refused with a line, not a runtime error).
  A model that warps features takes them per frame: features_j for frame j of the
  window (align: the neighbours' only)."""
  k = num_frames // 2
  if part == 'encode':
    return ['frames']
  if part == 'align':
    return ([f'features_{j}' for j in range(num_frames) if j != k] + ['lq']
            if warp_features else ['lq'])
  if part == 'rest':
    return ([f'features_{j}' for j in range(num_frames)] if warp_features
            else ['aligned']) + ['lq']
  return ['lq']


def graph_name(uncertainty: bool, precision: str = 'float32', part: str = 'whole') -> str:
  """The file of a head choice, precision and part (as onnx_export writes them):
  restore[_uncertainty][_int8].onnx whole; align.onnx and
  restore_aligned[_uncertainty].onnx, the network cut after the warp; encode.onnx,
  the encoder of a model that warps features."""
  if part in ('align', 'encode'):
    return f'{part}.onnx'
  stem = ('restore_aligned' if part == 'rest' else 'restore') + (
      '_uncertainty' if uncertainty else '')
  return f'{stem}_int8.onnx' if precision == 'int8' else f'{stem}.onnx'


def _onnxruntime(ort: Any, graph: Path, threads: int, precision: str
                 ) -> tuple[Callable[..., list[np.ndarray]], dict[str, Any]]:
  del precision  # float32 only (PRECISIONS)
  options = ort.SessionOptions()
  options.intra_op_num_threads = threads  # 0: every core
  options.log_severity_level = 3  # warnings about unused initialisers are noise
  session = ort.InferenceSession(str(graph), options, providers=['CPUExecutionProvider'])
  names = [i.name for i in session.get_inputs()]
  return (lambda *inputs: session.run(None, dict(zip(names, inputs))),
          {**session.get_modelmeta().custom_metadata_map, 'inputs': names})


def _openvino(ov: Any, graph: Path, threads: int, precision: str
              ) -> tuple[Callable[..., list[np.ndarray]], dict[str, Any]]:
  core = ov.Core()
  model = core.read_model(str(graph))
  meta: dict[str, Any] = {k: model.get_rt_info(['framework', k]).astype(str)
                          for k in ('params_sha256', 'size_multiple')
                          if model.has_rt_info(['framework', k])}
  meta['inputs'] = [i.get_any_name() for i in model.inputs]
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
    # The arrays are read in place (no copy into OpenVINO tensors): the features of a
    # window are tens of MB. infer is synchronous, so they outlive the call.
    results = request.infer(dict(enumerate(inputs)), share_inputs=True)
    return [results[o] for o in compiled.outputs]
  return run, meta


def _check_metadata(graph: Path, meta: dict[str, Any], info: bundle_lib.BundleInfo) -> int:
  """The graph's size multiple, once its metadata names this bundle's weights."""
  if meta.get('params_sha256') != info.params_sha256:
    raise bundle_lib.BundleError(graph, f"was exported from weights sha256 "
                                 f"{str(meta.get('params_sha256'))[:12]}..., not this "
                                 f"bundle's {info.params_sha256[:12]}...: export it again")
  return int(meta['size_multiple'])


class OnnxEngine:
  """Runs BUNDLE/onnx's graphs in ONNX Runtime or OpenVINO, one window at a time.

  The graphs take heights and widths that are multiples of the model's padding
  multiple: tiles are edge-padded to it here, as the JAX model pads itself, so the
  pixels are the same, and the outputs cropped back. A model that warps features
  runs encode.onnx per frame apart (`encodes_apart`): the Restorer then encodes each
  frame of a video once and hands the features to `restore_encoded`.
  """

  def __init__(self, path: str | os.PathLike, info: bundle_lib.BundleInfo, engine: str,
               uncertainty: bool = False, threads: int = 0, precision: str = 'float32'):
    if engine not in ENGINES[1:]:
      raise ValueError(f'OnnxEngine: engine must be one of {ENGINES[1:]}, got {engine!r}')
    if precision not in PRECISIONS[engine]:
      raise bundle_lib.BundleError(f'--engine={engine}', f'computes in '
                                   f'{" or ".join(PRECISIONS[engine])}, not {precision}')
    runtime = _import(engine)
    if (engine == 'openvino' and precision == 'bfloat16'
        and 'BF16' not in runtime.Core().get_property('CPU', 'OPTIMIZATION_CAPABILITIES')):
      # OpenVINO then computes in float32 without a word: the same frames, float32's speed.
      logging.warning('--dtype=bfloat16: this CPU has no bfloat16 instructions (AVX512_BF16 '
                      'or AMX), so OpenVINO computes in float32')
    self.scale, self.uncertainty, self.name = info.model.scale, uncertainty, engine
    opened = _onnxruntime if engine == 'onnxruntime' else _openvino

    def open_graph(part: str, precision: str) -> tuple[Callable[..., list[np.ndarray]], int]:
      graph = graph_path(path, uncertainty, precision, part)
      run, meta = opened(runtime, graph, threads, precision)
      want = graph_inputs(part, info.model.warp_features, info.model.num_frames)
      if meta['inputs'] != want:
        raise bundle_lib.BundleError(graph, f"takes inputs {meta['inputs']}, not {want} (an "
                                     f"export of another version): export it again")
      return run, _check_metadata(graph, meta, info)

    # The network cut after the warp (align, then rest) for bfloat16: the warp's half
    # in float32, as its sample positions need more than bfloat16's 8 bits. float32
    # runs the whole graph, or the halves where only they are there (the shipped
    # model carries the halves alone). A model that warps features is also cut
    # before its warp: encode (in `precision`, its convolutions), align, rest.
    self._encode = self._align = None
    self.encodes_apart = info.model.warp_features and precision != 'int8'
    part = 'whole'
    warps = info.model.use_alignment and info.model.num_neighbors > 0
    whole = Path(path) / ONNX_FOLDER / graph_name(uncertainty, precision)
    if self.encodes_apart:
      self._encode, _ = open_graph('encode', precision)
    if (warps and (self.encodes_apart or precision == 'bfloat16'
                   or (precision == 'float32' and not whole.is_file()))):
      self._align, _ = open_graph('align', 'float32')
    if self.encodes_apart or self._align is not None:
      part = 'rest'
    self.graph = graph_path(path, uncertainty, precision, part)
    self._run, self.multiple = open_graph(part, precision)

  def _pad(self, x: np.ndarray) -> np.ndarray:
    """Edge-pads the height and width (axes -3, -2) to the graph's multiple."""
    m = self.multiple
    pads = [(0, 0)] * (x.ndim - 3) + [(0, -x.shape[-3] % m), (0, -x.shape[-2] % m), (0, 0)]
    return np.ascontiguousarray(np.pad(x, pads, mode='edge'), np.float32)

  def encode(self, frames: np.ndarray) -> list[np.ndarray]:
    """Frames [N, h, w, 3] -> each one's features [C, H, W] (padded sizes, channels
    first: what the graphs take, onnx_export.py), as the graph gave them (not copied
    into one array: the cache keeps them frame by frame)."""
    return [self._encode(f[None, None])[0][0] for f in self._pad(frames)]

  def __call__(self, lq: np.ndarray) -> np.ndarray:
    if self.encodes_apart:  # every frame of every window encoded: no cache
      return self.restore_encoded(lq, [self.encode(window) for window in lq])
    return self._restore(lq, None)

  def restore_encoded(self, lq: np.ndarray, feats: Sequence[Sequence[np.ndarray]]
                      ) -> np.ndarray:
    """Windows lq [n, 2K+1, h, w, 3] and each window's per-frame features (`encode`)
    -> restored tiles, as __call__. The features go to the graphs frame by frame,
    read where they are (OpenVINO shares the arrays; nothing is stacked)."""
    return self._restore(lq, feats)

  def _restore(self, lq: np.ndarray, feats: Sequence[Sequence[np.ndarray]] | None
               ) -> np.ndarray:
    _, t, h, w, _ = lq.shape
    s, k = self.scale, t // 2
    padded = self._pad(lq)
    tiles = []
    for i, window in enumerate(padded):  # the graphs' batch is 1
      if feats is None:  # the window, aligned in a graph of its own where cut there
        inputs = [window[None]]
        if self._align is not None:
          inputs.insert(0, self._align(window[None])[0])
      else:  # each frame's cached features, read in place (no stacked copy)
        frames = [f[None] for f in feats[i]]
        if self._align is not None:
          neighbours = [j for j in range(t) if j != k]
          aligned = self._align(*(frames[j] for j in neighbours), window[None])
          for j, a in zip(neighbours, aligned):
            frames[j] = a
        inputs = [*frames, window[None]]
      out = self._run(*inputs)
      restored = np.clip(out[0][:, :s * h, :s * w], 0.0, 1.0)
      if self.uncertainty:
        restored = np.concatenate([restored, out[1][:, :s * h, :s * w, None]], axis=-1)
      tiles.append(restored)
    return np.concatenate(tiles)
