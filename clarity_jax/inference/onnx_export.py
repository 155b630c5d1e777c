"""The ONNX graph written into a bundle by `export --format=onnx` (jax2onnx).

  BUNDLE/onnx/restore.onnx               lq [B, 2K+1, m h, m w, 3] -> restored
  BUNDLE/onnx/restore_uncertainty.onnx   ... -> restored, scale (with the head)
  BUNDLE/onnx/align.onnx                 lq -> the aligned window (flow, warp)
  BUNDLE/onnx/restore_aligned[_uncertainty].onnx   aligned, lq -> the rest
  BUNDLE/onnx/*_int8.onnx                the same, int8 (with --int8_calibration)

A model that warps its encoder's features (warp_features) is cut in three instead,
so that a video's frames are each encoded once (restorer.py caches the features),
and its features cross the cuts one frame at a time, channels first:

  BUNDLE/onnx/encode.onnx                frames [1, 1, m h, m w, 3] -> features [1, C, m h, m w]
  BUNDLE/onnx/align.onnx                 features_j of each neighbour j, lq -> aligned_j
  BUNDLE/onnx/restore_aligned[_uncertainty].onnx   features_0 .. features_2K (the
                                         aligned neighbours and the reference's), lq -> the rest

Per frame, so that an engine reads the cached arrays in place (no window of
features stacked per output frame: 16 ms at 720p); channels first, as GridSample
takes them, so the warp reads them with no transpose (OpenVINO's align.onnx: 61 ->
37 ms at 720p, docs/performance.md).

The cut after the warp exists for OpenVINO's bfloat16: it runs the warp half in
float32 (bfloat16 sample positions are off by up to a pixel at 320 wide) and the
rest, nearly all of the work, in bfloat16.

Height and width are free multiples of the model's padding multiple m (bundle.json
and the graph's metadata say which; enhance edge-pads tiles to it, which the model
does itself, so the pixels are the same). The batch is fixed at export (--onnx_batch).

jax2onnx converts the network op for op, but for four operations that get ONNX ops
of their own (onnx_ops.py: GridSample for the warp, Resize and a renormalised
ConvTranspose for upsampling, Pad, AveragePool).

int8: NNCF's post-training quantization of each graph (weights per channel,
activations per tensor, as QuantizeLinear/DequantizeLinear pairs that OpenVINO runs in
int8; ONNX Runtime 1.32's layout optimiser breaks on them, and without it the graph
runs slower than float32: docs/performance.md), calibrated on windows of real
footage: the training footage, never the clips quality is judged on.

The graphs are checked with onnx.checker and against the JAX model in ONNX Runtime
before the bundle is moved into place. jax2onnx, onnx and nncf are imported only
here and in onnx_ops, when a graph is written.
"""

from __future__ import annotations

import dataclasses
import importlib
import json
import logging as logging_lib
from pathlib import Path
from typing import Any, Callable

from absl import logging
import cv2
import jax.numpy as jnp
import numpy as np
from flax import nnx

from clarity_jax import files
from clarity_jax.inference import bundle
from clarity_jax.inference import engines
from clarity_jax.inference import onnx_ops
from clarity_jax.media import readers
from clarity_jax.models import claritynet
from clarity_jax.models import flow as flow_lib

OPSET = 21
FOLDER = 'onnx'
# LQ sizes, in units of the size multiple, each graph is checked at before the
# bundle is moved into place: two shapes, so that a size baked in shows up.
_CHECK_SIZES = ((3, 5), (6, 2))
MAX_ABS_DIFF = 1e-4  # what export accepts, against the JAX model in float32


# ----------------------------------------------------------------------- export


def _require(module: str) -> Any:
  try:
    return importlib.import_module(module)
  except ImportError as e:
    raise bundle.BundleError('--format=onnx', f'needs {module}, which is not installed '
                             f'({e}); install the extra: pip install -e ".[onnx]"') from None


def convert(model: claritynet.ClarityNetSR, *, batch: int, uncertainty: bool,
            metadata: dict[str, str], part: str = 'whole') -> Any:
  """The ONNX ModelProto of `model` (its parameters baked in as initialisers).

  `part`: 'whole' (lq -> restored), or the network cut after the warp, for runtimes
  that compute the two halves at different precisions: 'align' (lq -> the aligned
  window, flow and warp) and 'rest' (aligned, lq -> restored: encoder, fusion,
  decoder, skip). A model that warps features: 'encode' (one frame -> its
  features, channels first), 'align' (each neighbour's features, lq -> each one's
  aligned features) and 'rest' (every frame's features, lq -> restored: fusion,
  decoder, skip); see the module doc.
  """
  jax2onnx = _require('jax2onnx')
  # onnx_ir warns about every shape-only value it does not serialise: noise here.
  logging_lib.getLogger('onnx_ir').setLevel(logging_lib.ERROR)
  onnx_ops.register()
  m, t = model.pad_multiple, model.num_frames
  graphdef, params = nnx.split(model)

  def outputs(net, fused, lq):
    return net.decode(fused, lq, with_uncertainty=True) if uncertainty else (
        net.decode(fused, lq),)

  k = model.num_neighbors
  neighbours = [j for j in range(t) if j != k]
  nhwc = lambda f: jnp.transpose(f, (0, 2, 3, 1))
  nchw = lambda f: jnp.transpose(f, (0, 3, 1, 2))

  def forward(*inputs):
    lq = inputs[-1]
    # Before any other node, so that h and w have a value to be read from.
    sizes = onnx_ops.sizes(lq, m)
    net = nnx.merge(graphdef, params)
    if part == 'encode':  # one frame, [1, 1, m h, m w, 3]
      out = (nchw(net.encode_frames(lq[0])),)
    elif part == 'align' and model.warp_features:  # each neighbour's features apart
      flows = flow_lib.pairwise_flows(net.flow, net.pad(lq), k)
      out = tuple(nchw(flow_lib.warp(nhwc(f), flows[:, j]))
                  for f, j in zip(inputs[:-1], neighbours))
    elif part == 'align':
      out = (net.align(net.pad(lq))[0],)
    elif model.warp_features:
      feats = (jnp.stack([nhwc(f) for f in inputs[:-1]], axis=1) if part == 'rest'
               else net.align_encoded(net.pad(lq), net.encode(net.pad(lq))))
      out = outputs(net, net.fuse(feats), lq)
    else:
      aligned = inputs[0] if part == 'rest' else net.align(net.pad(lq))[0]
      out = outputs(net, net.fuse(net.encode(aligned)), lq)
    # The sizes value must reach an output to stay in the graph: + 0 of one pixel.
    out = (out[0] + 0.0 * sizes[0, 0],) + tuple(out[1:])
    return out if len(out) > 1 else out[0]

  # Each input's shape, by the name engines.graph_inputs gives it.
  shapes = {'lq': (batch, t, f'{m}*h', f'{m}*w', 3), 'frames': (1, 1, f'{m}*h', f'{m}*w', 3),
            'aligned': (batch, t, f'{m}*h', f'{m}*w', 3),
            **{f'features_{j}': (batch, model.encoder_features, f'{m}*h', f'{m}*w')
               for j in range(t)}}
  inputs = {name: shapes[name]
            for name in engines.graph_inputs(part, model.warp_features, t)}
  names = {'encode': ['features'],
           'align': ([f'aligned_{j}' for j in neighbours] if model.warp_features
                     else ['aligned'])}.get(part)
  proto = jax2onnx.to_onnx(forward, inputs=list(inputs.values()),
                           model_name='claritynet', opset=OPSET,
                           input_names=list(inputs),
                           output_names=names or (['restored', 'scale'] if uncertainty
                                                  else ['restored']))
  for key, value in metadata.items():
    entry = proto.metadata_props.add()
    entry.key, entry.value = key, value
  return proto


def _run_parts(sessions: dict[str, Any], lq: np.ndarray) -> list[np.ndarray]:
  """The graphs of `sessions` (part -> ONNX Runtime session) chained: whole, or
  [encode each frame,] align, then rest."""
  if 'whole' in sessions:
    return sessions['whole'].run(None, {'lq': lq})
  if 'encode' in sessions:  # per frame, channels first (see the module doc)
    t, k = lq.shape[1], lq.shape[1] // 2
    frames = [np.concatenate([sessions['encode'].run(None, {'frames': window[None, j:j + 1]})[0]
                              for window in lq]) for j in range(t)]
    if 'align' in sessions:
      neighbours = [j for j in range(t) if j != k]
      aligned = sessions['align'].run(None, {**{f'features_{j}': frames[j] for j in neighbours},
                                             'lq': lq})
      for j, a in zip(neighbours, aligned):
        frames[j] = a
    return sessions['rest'].run(None, {**{f'features_{j}': f for j, f in enumerate(frames)},
                                       'lq': lq})
  aligned = sessions['align'].run(None, {'lq': lq})[0]
  return sessions['rest'].run(None, {'aligned': aligned, 'lq': lq})


def calibration_windows(clips: list[str], num_frames: int, scale: int, multiple: int,
                        count: int = 24, size: tuple[int, int] = (180, 320)
                        ) -> list[np.ndarray]:
  """`count` windows [2K+1, h, w, 3] float32 of real footage, spread over `clips`
  (videos or frame folders): consecutive frames area-downscaled by `scale`, as the
  model sees low-resolution input, centre-cropped to at most `size` and to multiples
  of the graph's size multiple."""
  found = [(clip, reader) for clip in clips
           for reader in readers.open_input(clip).clips.values()]
  per_clip = -(-count // len(found))
  windows: list[np.ndarray] = []
  for clip, reader in found:
    frames: list[np.ndarray] = []
    for frame in reader:  # float32 RGB in [0, 1]
      h, w = frame.shape[0] // scale, frame.shape[1] // scale
      ch = min(size[0], h) // multiple * multiple
      cw = min(size[1], w) // multiple * multiple
      if not ch or not cw:
        raise bundle.BundleError(clip, f'frames of {frame.shape[1]}x{frame.shape[0]} are '
                                 f'too small to calibrate x{scale} windows')
      small = cv2.resize(frame, (w, h), interpolation=cv2.INTER_AREA) if scale > 1 else frame
      top, left = (h - ch) // 2, (w - cw) // 2
      frames.append(np.ascontiguousarray(small[top:top + ch, left:left + cw], np.float32))
      if len(frames) == per_clip * num_frames:
        break
    if len(frames) < num_frames:
      raise bundle.BundleError(clip, f'{len(frames)} frames: a calibration clip needs at '
                               f'least {num_frames}')
    windows += [np.stack(frames[i:i + num_frames])
                for i in range(0, len(frames) - num_frames + 1, num_frames)]
  return windows[:count]


def quantize_int8(graph: Path, out: Path, windows: list[np.ndarray]) -> None:
  """NNCF's int8 post-training quantization of `graph`, calibrated on `windows`."""
  nncf, onnx = _require('nncf'), _require('onnx')
  nncf.set_log_level(logging_lib.ERROR)  # its progress bars are noise in a command
  model = onnx.load(str(graph))
  dataset = nncf.Dataset(windows, lambda window: {'lq': window[None]})
  quantized = nncf.quantize(model, dataset, subset_size=len(windows))
  del quantized.metadata_props[:]
  quantized.metadata_props.extend(model.metadata_props)
  onnx.checker.check_model(quantized)
  onnx.save(quantized, str(out))


def onnx_extras(spec: bundle.ModelSpec, params: Any, *, step: int, weights: str,
                batch: int = 1, int8_calibration: list[str] | None = None
                ) -> Callable[[Path, str], dict[str, Any]]:
  """An `extras` callback for save_bundle writing BUNDLE/onnx/ (see module doc);
  `int8_calibration`: clips of real footage to calibrate int8 graphs on."""

  def write(tmp: Path, params_sha256: str) -> dict[str, Any]:
    onnx, ort = _require('onnx'), _require('onnxruntime')
    model = spec.create()
    graphdef, _ = nnx.split(model)
    model = nnx.merge(graphdef, params)
    m, t, s = model.pad_multiple, spec.num_frames, spec.scale
    meta = {'clarity_jax.version': files.package_version(), 'format': 'clarity_jax.onnx',
            'model': json.dumps(dataclasses.asdict(spec)), 'scale': str(s),
            'num_neighbors': str(spec.num_neighbors), 'size_multiple': str(m),
            'batch': str(batch), 'input_range': '[0, 1] float32 RGB, frame K restored',
            'output_range': 'float32, clip to [0, 1]', 'step': str(step),
            'weights': weights, 'params_sha256': params_sha256}
    folder = tmp / FOLDER
    folder.mkdir()
    graphs, errs = {}, {}
    heads = (False, True) if model.has_uncertainty else (False,)
    rng = np.random.default_rng(0)
    # The whole network, and where it has a warp, the network cut after it (for
    # OpenVINO's bfloat16, which must not round the warp's sample positions); a
    # model that warps features is cut before it too (each frame encoded once).
    jobs = [(with_head, ('whole',)) for with_head in heads]
    cut = (('encode',) if model.warp_features else ()) + (
        ('align',) if model.flow is not None else ()) + ('rest',)
    if len(cut) > 1:
      jobs += [(with_head, cut) for with_head in heads]
    for with_head, parts in jobs:
      sessions = {}
      for part in parts:
        path = folder / engines.graph_name(with_head, part=part)
        if not path.exists():
          proto = convert(model, batch=batch, uncertainty=with_head, metadata=meta, part=part)
          onnx.checker.check_model(proto, full_check=True)
          onnx.save(proto, str(path))
        sessions[part] = ort.InferenceSession(str(path), providers=['CPUExecutionProvider'])
      err = 0.0
      for h, w in _CHECK_SIZES:
        lq = rng.random((batch, t, h * m, w * m, 3), np.float32)
        want = (model.with_uncertainty(lq) if with_head else (model(lq),))
        got = _run_parts(sessions, lq)
        err = max(err, *(float(np.max(np.abs(np.asarray(a) - b))) for a, b in zip(want, got)))
      name = ' + '.join(engines.graph_name(with_head, part=part) for part in parts)
      if err > MAX_ABS_DIFF:
        raise bundle.BundleError(path, f'{name} differs from the JAX model by {err:.2e} (max '
                                 f'abs on windows of {_CHECK_SIZES} x {m} pixels)')
      logging.info('%s agrees with JAX: max abs difference %.2e', name, err)
      errs[name] = err
      for part in parts:
        graph = folder / engines.graph_name(with_head, part=part)
        graphs[graph.name] = graph.stat().st_size
    if int8_calibration:
      windows = calibration_windows(int8_calibration, t, s, m)
      for with_head in heads:
        name = engines.graph_name(with_head, 'int8')
        quantize_int8(folder / engines.graph_name(with_head), folder / name, windows)
        graphs[name] = (folder / name).stat().st_size
      logging.info('int8 graphs calibrated on %d windows of %s', len(windows),
                   ', '.join(int8_calibration))
    return {'onnx': {'path': FOLDER, 'graphs': sorted(graphs), 'opset': OPSET,
                     'input': 'lq', 'input_shape': [batch, t, f'{m}*h', f'{m}*w', 3],
                     'size_multiple': m, 'checked_max_abs_diff': errs,
                     'int8_calibration': [str(c) for c in int8_calibration or []]}}

  return write
