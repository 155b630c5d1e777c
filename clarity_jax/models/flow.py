"""Alignment W (eq. 3): a SPyNet-like flow estimator and a dm-pix backward warp.

Flow convention (used everywhere in clarity_jax):
  flow[..., 0] is the horizontal (x, column) displacement and flow[..., 1] the
  vertical (y, row) displacement, in pixels of the image the flow is given at.
  It is a *backward* flow: the reference pixel (y, x) is found in the neighbour
  at (y + flow[y, x, 1], x + flow[y, x, 0]), so

    warp(neighbour, flow)[y, x] = neighbour[y + flow_y, x + flow_x]

  (bilinear), and a neighbour that is the reference moved right by d pixels
  (neighbour[y, x] = reference[y, x - d]) is aligned by the flow (d, 0).

Border handling: sample positions outside the image are clamped to the nearest
border pixel (replicate padding). dm-pix clamps both interpolation corners to the
image, so an out-of-range sample reads the edge value instead of zeros; zeros
would look like a dark frame edge to the encoder and to the temporal attention.
"""

import dm_pix
import jax
import jax.numpy as jnp
from flax import nnx

from clarity_jax.models import resample

# Smaller initial weights for the last conv of each flow refiner: the initial flow
# is then close to zero (identity warp), yet non-zero, so gradients reach every
# layer from the first step (an all-zero last layer would block them).
_SMALL_INIT = nnx.initializers.variance_scaling(0.01, 'fan_in', 'truncated_normal')


def warp(image: jax.Array, flow: jax.Array) -> jax.Array:
  """Backward-warps `image` [N, H, W, C] along `flow` [N, H, W, 2] (see module doc).

  Sample positions are computed in float32 whatever the image dtype: bfloat16
  has 8 significant bits, so from 256 on it cannot even hold every whole pixel
  index. The result has the image's dtype.
  """
  if image.ndim != 4 or flow.shape != image.shape[:3] + (2,):
    raise ValueError(
        f'warp: want image [N, H, W, C] and flow [N, H, W, 2], got '
        f'{image.shape} and {flow.shape}')
  _, height, width, _ = image.shape
  rows, cols = jnp.meshgrid(
      jnp.arange(height, dtype=jnp.float32),
      jnp.arange(width, dtype=jnp.float32), indexing='ij')
  flow = flow.astype(jnp.float32)
  # dm-pix takes one coordinate per volume axis, first axis first: (row, col).
  coords = jnp.stack([rows + flow[..., 1], cols + flow[..., 0]], axis=1)

  def warp_one(img: jax.Array, crd: jax.Array) -> jax.Array:
    # One channel at a time; vmap turns this into a single gather of channel
    # vectors, sharing the index arithmetic across channels.
    per_channel = lambda plane: dm_pix.flat_nd_linear_interpolate(plane, crd)
    return jax.vmap(per_channel, in_axes=-1, out_axes=-1)(img)

  return jax.vmap(warp_one)(image, coords)


def upsample_flow(flow: jax.Array, factor: int) -> jax.Array:
  """Bilinear flow upsampling; displacements scale with the resolution."""
  return resample.upsample(flow, factor, 'bilinear') * factor


def downsample2(x: jax.Array) -> jax.Array:
  """2x2 average pooling, the pyramid's anti-aliased step."""
  return resample.box_average(x, 2, stride=2)


class FlowRefiner(nnx.Module):
  """One pyramid level: predicts a flow increment from (ref, warped neighbour, flow).

  As SPyNet's basic module, but with 3x3 convs: the coarse-to-fine pyramid, not
  the kernel size, provides the reach for large motions, and 3x3 convs are what
  accelerators run best.
  """

  def __init__(self, features: int, *, dtype: jnp.dtype, param_dtype: jnp.dtype,
               rngs: nnx.Rngs):
    conv = lambda i, o, **kw: nnx.Conv(i, o, (3, 3), dtype=dtype,
                                       param_dtype=param_dtype, rngs=rngs, **kw)
    self.dtype = dtype
    self.convs = nnx.List([
        conv(3 + 3 + 2, features),
        conv(features, features),
        conv(features, max(features // 2, 2)),
    ])
    self.out = conv(max(features // 2, 2), 2, kernel_init=_SMALL_INIT)

  def __call__(self, ref: jax.Array, warped: jax.Array,
               flow: jax.Array) -> jax.Array:
    x = jnp.concatenate([ref, warped, flow.astype(ref.dtype)], axis=-1)
    for conv in self.convs:
      x = nnx.leaky_relu(conv(x), 0.1)
    return self.out(x).astype(jnp.float32)


class FlowEstimator(nnx.Module):
  """Coarse-to-fine optical flow between a reference and a neighbour frame.

  Levels run from 1/2^levels up to 1/2 of the input resolution, never at full
  resolution: flow is smooth, and the half-resolution flow upsampled bilinearly
  costs a quarter of a full-resolution level. The flow is accumulated in float32.
  Any input size: frames are edge-padded to a multiple of 2**levels here, and
  the flow cropped back, so the rest of the network runs at its own size.
  """

  def __init__(self, *, features: int, levels: int,
               dtype: jnp.dtype = jnp.float32,
               param_dtype: jnp.dtype = jnp.float32, rngs: nnx.Rngs):
    if levels < 1:
      raise ValueError(f'FlowEstimator: levels must be >= 1, got {levels}')
    self.levels = levels
    self.dtype = dtype
    # refiners[0] works at the coarsest level, refiners[-1] at half resolution.
    self.refiners = nnx.List([
        FlowRefiner(features, dtype=dtype, param_dtype=param_dtype, rngs=rngs)
        for _ in range(levels)])

  @property
  def multiple(self) -> int:
    """The pyramid's size multiple; inputs are edge-padded up to it."""
    return 2 ** self.levels

  def __call__(self, ref: jax.Array, neighbour: jax.Array) -> jax.Array:
    """ref, neighbour [N, H, W, 3] in [0, 1] -> flow [N, H, W, 2] float32.

    The flow aligns the neighbour to the reference: warp(neighbour, flow) ~ ref.
    """
    _, height, width, _ = ref.shape
    rows, cols = (0, -height % self.multiple), (0, -width % self.multiple)
    pad = lambda x: resample.edge_pad(x.astype(self.dtype) - 0.5, rows, cols)
    a, b = pad(ref), pad(neighbour)
    pyramid: list[tuple[jax.Array, jax.Array]] = []
    for _ in range(self.levels):
      a, b = downsample2(a), downsample2(b)
      pyramid.append((a, b))
    n, h, w, _ = pyramid[-1][0].shape
    flow = jnp.zeros((n, h, w, 2), jnp.float32)
    for level, refiner in enumerate(self.refiners):
      a, b = pyramid[self.levels - 1 - level]
      if level:
        flow = upsample_flow(flow, 2)
      flow = flow + refiner(a, warp(b, flow), flow)
    return crop(upsample_flow(flow, 2), height, width)


def crop(x: jax.Array, height: int, width: int) -> jax.Array:
  """x [N, H, W, ...] -> its top-left height x width; x itself when that is all of it
  (no slice op: ONNX export traces symbolic sizes, where the slice would cost a
  shape computation for nothing)."""
  if x.shape[1] == height and x.shape[2] == width:
    return x
  return x[:, :height, :width]


def pairwise_flows(estimator: FlowEstimator, frames: jax.Array,
                   ref_index: int) -> jax.Array:
  """Flows from the reference to every frame of a window, in one batched call.

  frames [B, T, H, W, 3] -> [B, T, H, W, 2]; the reference's own flow is zero
  (not estimated: it would only add noise and compute).
  """
  bsz, t, h, w, c = frames.shape
  ref = jnp.broadcast_to(frames[:, ref_index:ref_index + 1],
                         (bsz, t - 1, h, w, c)).reshape(-1, h, w, c)
  nbr = jnp.concatenate(
      [frames[:, :ref_index], frames[:, ref_index + 1:]], axis=1)
  nbr = nbr.reshape(-1, h, w, c)
  flow = estimator(ref, nbr).reshape(bsz, t - 1, h, w, 2)
  zero = jnp.zeros_like(flow[:, :1])
  return jnp.concatenate(
      [flow[:, :ref_index], zero, flow[:, ref_index:]], axis=1)
