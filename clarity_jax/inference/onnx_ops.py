"""The ONNX ops of ClarityNetSR's resampling, for jax2onnx (onnx_export.py).

jax2onnx converts most of the network op for op. Five of the model's operations
get ONNX ops of their own here, through jax2onnx's plugin registry:
  - the warp (models/flow.py) -> GridSample (bilinear, border padding, corners
    aligned): one op that ONNX Runtime, OpenVINO and TensorRT each run natively;
    dm-pix's gather lowers to GatherND + CumProd, which ONNX Runtime lacks;
  - resample.upsample -> Resize with fixed scales (bilinear), which runs at any size
    (jax.image.resize converts to fixed output sizes only);
  - bicubic.phases (the global skip) -> ConvTranspose with stride 1, the same
    arithmetic as its convolution: OpenVINO's bfloat16 mode computes every
    Convolution in bfloat16, but keeps a ConvTranspose at the graph's tail in
    float32, and the skip is the picture itself (8 bits would cost 0.5/255);
  - resample.edge_pad -> Pad(mode='edge'): jnp.pad's edge mode is a concatenation
    that jax2onnx sizes wrongly on symbolic sizes;
  - resample.box_average -> AveragePool: jax2onnx writes a pool as a convolution
    over four spatial axes, which OpenVINO refuses.
jax2onnx finds the size of a symbolic dimension only by name, and the graph's
inputs are sized m*h, not h: a first node slices every m-th pixel of the input,
so that h and w are sizes of a value it can read them from.
"""

from __future__ import annotations

import jax
from jax.extend import core as jex_core
import jax.numpy as jnp
import numpy as np

from clarity_jax.models import bicubic
from clarity_jax.models import flow as flow_lib
from clarity_jax.models import resample

# ------------------------------------------------------------------ primitives
# Each has a JAX implementation (the model's own function) and an abstract shape;
# only the ONNX lowering below differs.

_warp_p = jex_core.Primitive('clarity_jax_grid_sample')
_upsample_p = jex_core.Primitive('clarity_jax_upsample')
_phases_p = jex_core.Primitive('clarity_jax_cubic_phases')
_edge_pad_p = jex_core.Primitive('clarity_jax_edge_pad')
_box_p = jex_core.Primitive('clarity_jax_box_average')
_sizes_p = jex_core.Primitive('clarity_jax_sizes')

_original = {'warp': flow_lib.warp, 'upsample': resample.upsample, 'phases': bicubic.phases,
             'edge_pad': resample.edge_pad, 'box_average': resample.box_average}


def _grid(flow: jax.Array) -> jax.Array:
  """GridSample's grid: sample positions (x, y) normalised to [-1, 1] over the
  frame's pixel centres (align_corners=1: -1 is pixel 0, +1 pixel size - 1)."""
  n, h, w, _ = flow.shape
  rows = jax.lax.broadcasted_iota(jnp.float32, (n, h, w), 1)
  cols = jax.lax.broadcasted_iota(jnp.float32, (n, h, w), 2)
  flow = flow.astype(jnp.float32)
  # A 1-pixel side has nothing to interpolate: any value maps to pixel 0. (jnp, not
  # max(): h and w are symbolic, and only their runtime values can be compared.)
  step = lambda n: 2.0 / jnp.maximum(n - 1, 1).astype(jnp.float32)
  gx = (cols + flow[..., 0]) * step(w) - 1.0
  gy = (rows + flow[..., 1]) * step(h) - 1.0
  return jnp.stack([gx, gy], axis=-1)


def _warp_impl(image: jax.Array, grid: jax.Array) -> jax.Array:
  _, h, w, _ = image.shape
  x = (grid[..., 0] + 1.0) * 0.5 * max(w - 1, 1)
  y = (grid[..., 1] + 1.0) * 0.5 * max(h - 1, 1)
  rows = jax.lax.broadcasted_iota(jnp.float32, x.shape, 1)
  cols = jax.lax.broadcasted_iota(jnp.float32, x.shape, 2)
  return _original['warp'](image, jnp.stack([x - cols, y - rows], axis=-1))


_warp_p.def_impl(_warp_impl)
_warp_p.def_abstract_eval(lambda image, grid: jax.core.ShapedArray(image.shape, image.dtype))
_upsample_p.def_impl(lambda x, *, factor, method: _original['upsample'](x, factor, method))
_upsample_p.def_abstract_eval(lambda x, *, factor, method: jax.core.ShapedArray(
    (x.shape[0], factor * x.shape[1], factor * x.shape[2], x.shape[3]), x.dtype))
_phases_p.def_impl(lambda x, *, scale: _original['phases'](x, scale))
_phases_p.def_abstract_eval(lambda x, *, scale: jax.core.ShapedArray(
    (*x.shape[:3], scale * scale * x.shape[3]), jnp.float32))
_edge_pad_p.def_impl(lambda x, *, rows, cols: _original['edge_pad'](x, rows, cols))
_edge_pad_p.def_abstract_eval(lambda x, *, rows, cols: jax.core.ShapedArray(
    (x.shape[0], x.shape[1] + sum(rows), x.shape[2] + sum(cols), x.shape[3]), x.dtype))
_box_p.def_impl(lambda x, *, window, stride: _original['box_average'](x, window, stride))
_box_p.def_abstract_eval(lambda x, *, window, stride: jax.core.ShapedArray(
    (x.shape[0], (x.shape[1] - window) // stride + 1, (x.shape[2] - window) // stride + 1,
     x.shape[3]), x.dtype))
_sizes_p.def_impl(lambda lq, *, multiple: lq[0, 0, ::multiple, ::multiple, 0])
_sizes_p.def_abstract_eval(lambda lq, *, multiple: jax.core.ShapedArray(
    (lq.shape[2] // multiple, lq.shape[3] // multiple), lq.dtype))


def _export_warp(image: jax.Array, flow: jax.Array) -> jax.Array:
  return _warp_p.bind(image, _grid(flow))


def _export_upsample(x: jax.Array, factor: int, method: str) -> jax.Array:
  return _upsample_p.bind(x, factor=int(factor), method=str(method))


def _export_phases(x: jax.Array, scale: int) -> jax.Array:
  return _phases_p.bind(x.astype(jnp.float32), scale=int(scale))


def _export_edge_pad(x: jax.Array, rows: tuple[int, int], cols: tuple[int, int]
                     ) -> jax.Array:
  if not any(rows) and not any(cols):
    return x
  return _edge_pad_p.bind(x, rows=tuple(map(int, rows)), cols=tuple(map(int, cols)))


def _export_box_average(x: jax.Array, window: int, stride: int = 1) -> jax.Array:
  return _box_p.bind(x, window=int(window), stride=int(stride))


# --------------------------------------------------------------------- lowerings


def _register_plugins() -> None:
  """Registers the six lowerings with jax2onnx (imported here: an optional extra)."""
  # pylint: disable=g-import-not-at-top
  from jax2onnx.plugins import plugin_system
  from jax2onnx.plugins._patching import MonkeyPatchSpec
  # jax2onnx's own plugins stamp shapes with these; no public equivalent yet.
  from jax2onnx.plugins._ir_shapes import _ensure_value_metadata, _stamp_type_and_shape
  import onnx_ir as ir

  def stamp(ctx, value, like, shape):
    value.type = like.type
    _stamp_type_and_shape(value, tuple(shape))
    _ensure_value_metadata(ctx, value)
    return value

  def const(ctx, name, values, dtype=np.int64):
    return ctx.builder.add_initializer_from_array(
        name=ctx.fresh_name(name), array=np.asarray(values, dtype))

  def in_nchw(ctx, eqn, make, out_shape_nchw):
    """Transposes the first input to NCHW, runs `make(ctx, nchw, *other inputs)`,
    and transposes back to the equation's NHWC output."""
    x_var, *rest = eqn.invars
    (out_var,) = eqn.outvars
    b = ctx.builder
    x = ctx.get_value_for_var(x_var, name_hint=ctx.fresh_name('nhwc'))
    others = [ctx.get_value_for_var(v, name_hint=ctx.fresh_name('arg')) for v in rest]
    out_spec = ctx.get_value_for_var(out_var, name_hint=ctx.fresh_name('out'))
    n, h, w, c = x_var.aval.shape
    nchw = stamp(ctx, b.Transpose(x, perm=[0, 3, 1, 2], _outputs=[ctx.fresh_name('nchw')]),
                 x, (n, c, h, w))
    y = stamp(ctx, make(ctx, nchw, *others), x, out_shape_nchw)
    on, oh, ow, oc = out_var.aval.shape
    out = stamp(ctx, b.Transpose(y, perm=[0, 2, 3, 1], _outputs=[out_spec.name]), x,
                (on, oh, ow, oc))
    ctx.bind_value_for_var(out_var, out)

  def cubic_phases(ctx, x, s, shape):
    """bicubic.phases: ConvTranspose(x) / ConvTranspose(ones), stride 1, the kernel
    flipped (a ConvTranspose correlates with the flipped kernel)."""
    n, c, h, w = shape
    b = ctx.builder
    kernel = bicubic.phase_kernel(s, c)
    flip = lambda k: np.ascontiguousarray(k[::-1, ::-1].transpose(2, 3, 0, 1))
    p = bicubic.TAPS // 2
    total = stamp(ctx, b.ConvTranspose(x, const(ctx, 'cubic', flip(kernel), np.float32),
                                       pads=[p, p, p, p], _outputs=[ctx.fresh_name('cubic_sum')]),
                  x, (n, s * s * c, h, w))
    sizes = b.Shape(x, start=2, end=4, _outputs=[ctx.fresh_name('hw')])
    sizes.type = ir.TensorType(ir.DataType.INT64)
    ones_shape = b.Concat(const(ctx, 'one_one', [1, 1]), sizes, axis=0,
                          _outputs=[ctx.fresh_name('ones_shape')])
    ones_shape.type = ir.TensorType(ir.DataType.INT64)
    ones = stamp(ctx, b.ConstantOfShape(ones_shape, value=ir.tensor(np.ones(1, np.float32)),
                                        _outputs=[ctx.fresh_name('ones')]), x, (1, 1, h, w))
    inside = stamp(ctx, b.ConvTranspose(
        ones, const(ctx, 'cubic_one', flip(kernel.sum(axis=2, keepdims=True)), np.float32),
        pads=[p, p, p, p], _outputs=[ctx.fresh_name('cubic_weight')]), x, (1, s * s * c, h, w))
    return b.Div(total, inside, _outputs=[ctx.fresh_name('cubic')])

  def patch(module, attr, value):
    return MonkeyPatchSpec(target=module, attr=attr, make_value=lambda _: value)

  class GridSample(plugin_system.PrimitiveLeafPlugin):
    _PRIM = _warp_p

    def lower(self, ctx, eqn):
      n, h, w, c = eqn.invars[0].aval.shape
      in_nchw(ctx, eqn, lambda ctx, x, grid: ctx.builder.GridSample(
          x, grid, mode='linear', padding_mode='border', align_corners=1,
          _outputs=[ctx.fresh_name('GridSample')]), (n, c, h, w))

    @classmethod
    def binding_specs(cls):
      return [patch(flow_lib, 'warp', _export_warp)]

  class Upsample(plugin_system.PrimitiveLeafPlugin):
    _PRIM = _upsample_p

    def lower(self, ctx, eqn):
      f, method = eqn.params['factor'], eqn.params['method']
      n, h, w, c = eqn.invars[0].aval.shape
      make = lambda ctx, x: ctx.builder.Resize(
          x, const(ctx, 'roi', [], np.float32), const(ctx, 'scales', [1, 1, f, f], np.float32),
          mode='linear', coordinate_transformation_mode='half_pixel',
          _outputs=[ctx.fresh_name('Resize')])
      in_nchw(ctx, eqn, make, (n, c, f * h, f * w))

    @classmethod
    def binding_specs(cls):
      return [patch(resample, 'upsample', _export_upsample)]

  class CubicPhases(plugin_system.PrimitiveLeafPlugin):
    _PRIM = _phases_p

    def lower(self, ctx, eqn):
      s = eqn.params['scale']
      n, h, w, c = eqn.invars[0].aval.shape
      in_nchw(ctx, eqn, lambda ctx, x: cubic_phases(ctx, x, s, (n, c, h, w)),
              (n, s * s * c, h, w))

    @classmethod
    def binding_specs(cls):
      return [patch(bicubic, 'phases', _export_phases)]

  class EdgePad(plugin_system.PrimitiveLeafPlugin):
    _PRIM = _edge_pad_p

    def lower(self, ctx, eqn):
      (top, bottom), (left, right) = eqn.params['rows'], eqn.params['cols']
      n, h, w, c = eqn.invars[0].aval.shape
      in_nchw(ctx, eqn, lambda ctx, x: ctx.builder.Pad(
          x, const(ctx, 'pads', [0, 0, top, left, 0, 0, bottom, right]), mode='edge',
          _outputs=[ctx.fresh_name('Pad')]), (n, c, h + top + bottom, w + left + right))

    @classmethod
    def binding_specs(cls):
      return [patch(resample, 'edge_pad', _export_edge_pad)]

  class BoxAverage(plugin_system.PrimitiveLeafPlugin):
    _PRIM = _box_p

    def lower(self, ctx, eqn):
      k, st = eqn.params['window'], eqn.params['stride']
      on, oh, ow, oc = eqn.outvars[0].aval.shape
      in_nchw(ctx, eqn, lambda ctx, x: ctx.builder.AveragePool(
          x, kernel_shape=[k, k], strides=[st, st], _outputs=[ctx.fresh_name('AveragePool')]),
          (on, oc, oh, ow))

    @classmethod
    def binding_specs(cls):
      return [patch(resample, 'box_average', _export_box_average)]

  class Sizes(plugin_system.PrimitiveLeafPlugin):
    _PRIM = _sizes_p

    def lower(self, ctx, eqn):
      (lq_var,), (out_var,) = eqn.invars, eqn.outvars
      m = eqn.params['multiple']
      b = ctx.builder
      lq = ctx.get_value_for_var(lq_var, name_hint=ctx.fresh_name('lq'))
      big = np.iinfo(np.int64).max
      every = b.Slice(lq, const(ctx, 'starts', [0, 0, 0, 0, 0]),
                      const(ctx, 'ends', [1, 1, big, big, 1]),
                      const(ctx, 'axes', [0, 1, 2, 3, 4]), const(ctx, 'steps', [1, 1, m, m, 1]),
                      _outputs=[ctx.fresh_name('every_m')])
      every.type = lq.type
      sizes = stamp(ctx, b.Squeeze(every, const(ctx, 'axes', [0, 1, 4]),
                                   _outputs=[ctx.fresh_name('sizes')]),
                    lq, out_var.aval.shape)
      ctx.bind_value_for_var(out_var, sizes)  # records h, w as this value's dims

  for name, cls, op in (('grid_sample', GridSample, 'GridSample'),
                        ('upsample', Upsample, 'Resize'), ('cubic_phases', CubicPhases,
                                                           'ConvTranspose'),
                        ('edge_pad', EdgePad, 'Pad'),
                        ('box_average', BoxAverage, 'AveragePool'), ('sizes', Sizes, 'Slice')):
    plugin_system.register_primitive(
        jaxpr_primitive=cls._PRIM.name, onnx=[{'component': op}], since='clarity_jax',
        context='clarity_jax', component=name, testcases=[])(cls)


_registered = False


def register() -> None:
  """Registers the lowerings with jax2onnx, once (jax2onnx is imported here: an
  optional extra)."""
  global _registered
  if not _registered:
    _register_plugins()
    _registered = True


def sizes(lq: jax.Array, multiple: int) -> jax.Array:
  """[h, w] of the symbolic input sized (multiple h, multiple w): bind it before any
  other op, and let it reach an output, so that jax2onnx can read h and w."""
  return _sizes_p.bind(lq, multiple=multiple)
