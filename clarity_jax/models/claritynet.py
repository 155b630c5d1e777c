"""ClarityNetSR: joint video deblurring and super-resolution in one pass (eqs. 3-6).

  lq window [B, 2K+1, h, w, 3]
    -> W: flow from the reference to each neighbour (SPyNet-like, at <= h/2),
          neighbours backward-warped to the reference (dm-pix bilinear)   eq. 3
    -> E: shared residual encoder on every aligned frame                  eq. 4
          (warp_features: E on every frame as it is, then its features
          warped: a frame's features do not depend on the window, so a
          video encodes each frame once; `encode_frames`, `restore_encoded`)
    -> Phi: temporal attention (agreement with the reference) + spatial   eq. 5
    -> G: residual decoder at LR, conv to 3 s^2 channels, depth-to-space,
          + bicubic upsampled reference frame (global skip)               eq. 6
    -> [B, s h, s w, 3] float32, not clipped
  [ -> U: optional uncertainty head on G's last features (held fixed): the Laplace
          scale b of every output pixel's error, [B, s h, s w] float32 ]

Everything heavy runs at the input (LR) resolution and the only HR-resolution
work is the depth-to-space and the skip, so the cost grows with h w, not s^2 h w.
The network holds only nnx.Param state (no batch statistics, no dropout).

Variants (measured by `cost.measure_cost`, XLA cost analysis of one jitted forward pass
on a 180x320 window of 5 frames (K = 2) at x4, batch 1, float32, CPU backend;
regenerate with `python docs/variants_table.py`):

  | variant | params | GFLOPs / 180x320 input, x4, K=2 |
  | --- | --- | --- |
  | tiny | 22,597 | 5.1 |
  | small | 626,815 | 93.4 |
  | base | 4,300,985 | 604.0 |
"""

import math
import numbers
from typing import Any

import dm_pix
import jax
import jax.numpy as jnp
from flax import nnx

from clarity_jax import errors
from clarity_jax.models import bicubic
from clarity_jax.models import flow as flow_lib
from clarity_jax.models import fusion as fusion_lib
from clarity_jax.models import resample

# Size hyper-parameters of each variant: keyword arguments of ClarityNetSR.
VARIANTS: dict[str, dict[str, int]] = {
    # CPU tests: a few seconds to compile and train.
    'tiny': dict(encoder_features=8, encoder_blocks=1, decoder_features=16,
                 decoder_blocks=1, flow_features=8, flow_levels=2),
    # Laptop / quick experiments.
    'small': dict(encoder_features=32, encoder_blocks=2, decoder_features=64,
                  decoder_blocks=6, flow_features=16, flow_levels=3),
    # Accelerators: BasicVSR++-sized or smaller. Wide 3x3 convs (128 channels,
    # what tensor cores like) in the decoder, which runs once per output frame;
    # a narrower encoder, which runs on every frame of the window.
    'base': dict(encoder_features=64, encoder_blocks=3, decoder_features=128,
                 decoder_blocks=12, flow_features=32, flow_levels=4),
}

_SCALES = (1, 2, 4)
_DTYPES = ('float32', 'bfloat16', 'float16')
# BasicSR's ResidualBlockNoBN initialisation: residual branches start at 0.1 of
# the default scale, so a deep stack starts near the identity and trains stably
# without normalisation layers.
_RESIDUAL_INIT = nnx.initializers.variance_scaling(0.01, 'fan_in',
                                                   'truncated_normal')


# The uncertainty head's scale b (in [0, 1] image units) starts near 3/255, a
# typical restoration error, and never goes below a tenth of a grey level, where
# |e| / b would overflow on a perfect pixel.
UNCERTAINTY_INIT = 3.0 / 255.0
UNCERTAINTY_FLOOR = 0.1 / 255.0


def _lrelu(x: jax.Array) -> jax.Array:
  return nnx.leaky_relu(x, 0.1)


class ResidualBlock(nnx.Module):
  """x + conv(lrelu(conv(x))), no normalisation (as EDSR / BasicSR)."""

  def __init__(self, features: int, *, dtype: jnp.dtype,
               param_dtype: jnp.dtype, rngs: nnx.Rngs):
    self.conv1 = nnx.Conv(features, features, (3, 3), dtype=dtype,
                          param_dtype=param_dtype, rngs=rngs)
    self.conv2 = nnx.Conv(features, features, (3, 3), dtype=dtype,
                          param_dtype=param_dtype, kernel_init=_RESIDUAL_INIT,
                          rngs=rngs)

  def __call__(self, x: jax.Array) -> jax.Array:
    return x + self.conv2(_lrelu(self.conv1(x)))


class Encoder(nnx.Module):
  """E (eq. 4): one shared feature extractor for every aligned frame."""

  def __init__(self, features: int, num_blocks: int, *, dtype: jnp.dtype,
               param_dtype: jnp.dtype, rngs: nnx.Rngs):
    self.conv_in = nnx.Conv(3, features, (3, 3), dtype=dtype,
                            param_dtype=param_dtype, rngs=rngs)
    self.blocks = nnx.List([
        ResidualBlock(features, dtype=dtype, param_dtype=param_dtype, rngs=rngs)
        for _ in range(num_blocks)])

  def __call__(self, frames: jax.Array) -> jax.Array:
    """frames [N, h, w, 3] in [0, 1] -> features [N, h, w, C]."""
    x = _lrelu(self.conv_in(frames - 0.5))
    for block in self.blocks:
      x = block(x)
    return x


class Decoder(nnx.Module):
  """G (eq. 6): reconstruction at LR, then sub-pixel upsampling to scale s.

  One conv to 3 s^2 channels and a depth-to-space (ESPCN): the HR image costs no
  convolution at HR resolution, which would cost s^2 times an LR one.
  """

  def __init__(self, in_features: int, features: int, num_blocks: int,
               scale: int, *, dtype: jnp.dtype, param_dtype: jnp.dtype,
               rngs: nnx.Rngs):
    conv = lambda i, o: nnx.Conv(i, o, (3, 3), dtype=dtype,
                                 param_dtype=param_dtype, rngs=rngs)
    self.scale = scale
    self.conv_in = conv(in_features, features)
    self.blocks = nnx.List([
        ResidualBlock(features, dtype=dtype, param_dtype=param_dtype, rngs=rngs)
        for _ in range(num_blocks)])
    self.conv_body = conv(features, features)
    self.conv_out = conv(features, 3 * scale * scale)

  def features(self, fused: jax.Array) -> jax.Array:
    """fused [B, h, w, C] -> the last LR features [B, h, w, F], before upsampling."""
    x = self.conv_in(fused)
    y = x
    for block in self.blocks:
      y = block(y)
    return _lrelu(self.conv_body(y) + x)

  def upsample(self, features: jax.Array, skip: jax.Array) -> jax.Array:
    """Last features and the skip's phases (bicubic.phases) -> the restored image
    [B, s h, s w, 3] float32: one depth-to-space of their sum, so the skip costs
    nothing at the output's resolution."""
    phases = self.conv_out(features).astype(jnp.float32) + skip
    return dm_pix.depth_to_space(phases, self.scale)

  def __call__(self, fused: jax.Array, skip: jax.Array) -> jax.Array:
    return self.upsample(self.features(fused), skip)


class UncertaintyHead(nnx.Module):
  """U: the Laplace scale b of each output pixel's error, from G's last features.

  A sub-pixel head of its own at LR: a 1x1 conv to a quarter of the features, then a
  3x3 conv to s x s scales and depth-to-space. Narrow on purpose: about 1% of the
  small model's FLOPs (a first 3x3 conv to half the features cost far more CPU
  time; docs/performance.md). Its input is held fixed (stop_gradient):
  training it never changes the restoration, and it can be added to a trained,
  frozen restorer. b is shared by the three colours: it estimates the mean
  absolute error over RGB, the quantity the Charbonnier loss measures.
  """

  def __init__(self, in_features: int, scale: int, *, dtype: jnp.dtype,
               param_dtype: jnp.dtype, rngs: nnx.Rngs):
    hidden = max(in_features // 4, 8)
    self.scale = scale
    self.conv_in = nnx.Conv(in_features, hidden, (1, 1), dtype=dtype,
                            param_dtype=param_dtype, rngs=rngs)
    # softplus(bias) = UNCERTAINTY_INIT - floor: every pixel starts at a plausible
    # scale, and small kernels keep it there until the head has learnt something.
    bias = math.log(math.expm1(UNCERTAINTY_INIT - UNCERTAINTY_FLOOR))
    self.conv_out = nnx.Conv(hidden, scale * scale, (3, 3), dtype=dtype,
                             param_dtype=param_dtype, kernel_init=_RESIDUAL_INIT,
                             bias_init=nnx.initializers.constant(bias), rngs=rngs)

  def __call__(self, features: jax.Array) -> jax.Array:
    """features [B, h, w, F] -> b [B, s h, s w] float32, >= UNCERTAINTY_FLOOR."""
    x = _lrelu(self.conv_in(jax.lax.stop_gradient(features)))
    raw = dm_pix.depth_to_space(self.conv_out(x), self.scale)[..., 0]
    return jax.nn.softplus(raw.astype(jnp.float32)) + UNCERTAINTY_FLOOR


class ClarityNetSR(nnx.Module):
  """Flow-guided alignment, attention fusion and a joint deblur-SR decoder.

  Call on lq [B, 2K+1, h, w, 3] (float, [0, 1]; the reference is frame K) to get
  the restored reference [B, s h, s w, 3] float32. Any h, w >= 1: the window is
  edge-padded to multiples of `pad_multiple` (even, for the spatial attention's
  half resolution, and the flow pyramid's 2**levels) and the output cropped back.
  """

  def __init__(self, *, scale: int, num_neighbors: int, encoder_features: int,
               encoder_blocks: int, decoder_features: int, decoder_blocks: int,
               flow_features: int, flow_levels: int, use_alignment: bool = True,
               use_attention: bool = True, uncertainty: bool = False,
               warp_features: bool = False, dtype: jnp.dtype = jnp.float32,
               param_dtype: jnp.dtype = jnp.float32,
               rngs: nnx.Rngs):
    _check_task(scale, num_neighbors)
    self.scale = int(scale)
    self.num_neighbors = int(num_neighbors)
    self.num_frames = 2 * self.num_neighbors + 1
    self.dtype = dtype
    self.warp_features = bool(warp_features)
    kw = dict(dtype=dtype, param_dtype=param_dtype, rngs=rngs)
    # K = 0 has nothing to align: no flow parameters at all.
    self.flow = (flow_lib.FlowEstimator(features=flow_features,
                                        levels=flow_levels, **kw)
                 if use_alignment and num_neighbors > 0 else None)
    # Even sides for the spatial attention's half resolution, and the flow pyramid's
    # multiple: every stage runs on the same padded frame, so a frame edge-padded to
    # this multiple beforehand (an exported graph's input) restores exactly the same.
    self.pad_multiple = math.lcm(2, self.flow.multiple if self.flow is not None else 1)
    self.encoder_features = encoder_features
    self.encoder = Encoder(encoder_features, encoder_blocks, **kw)
    self.fusion = (fusion_lib.AttentionFusion(encoder_features, **kw)
                   if use_attention else fusion_lib.MeanFusion(encoder_features, **kw))
    self.decoder = Decoder(encoder_features, decoder_features, decoder_blocks,
                           self.scale, **kw)
    # Created last, so the restorer's parameters draw the same random numbers with
    # and without it: the same seed gives the same restorer.
    self.uncertainty_head = (UncertaintyHead(decoder_features, self.scale, **kw)
                             if uncertainty else None)

  def pad(self, lq: jax.Array) -> jax.Array:
    """Edge-pads h, w up to multiples of `pad_multiple` (checks the shape too).

    h and w are compared with 1 one at a time, never with each other: jax2tf's
    symbolic sizes (a SavedModel taking any h, w) can say h >= 1 but not h < w.
    """
    if (lq.ndim != 5 or lq.shape[1] != self.num_frames or lq.shape[-1] != 3
        or lq.shape[2] < 1 or lq.shape[3] < 1):
      raise ValueError(
          f'ClarityNetSR(K={self.num_neighbors}): want lq [B, {self.num_frames}, '
          f'h, w, 3], got {tuple(lq.shape)}')
    b, t, h, w, c = lq.shape
    padded = self._pad_frames(lq.astype(jnp.float32).reshape(b * t, h, w, c))
    return padded.reshape(b, t, *padded.shape[1:])

  def _pad_frames(self, frames: jax.Array) -> jax.Array:
    """[N, h, w, C] edge-padded to multiples of `pad_multiple`."""
    (_, h, w, _), m = frames.shape, self.pad_multiple
    return resample.edge_pad(frames, (0, -h % m), (0, -w % m))

  def align(self, lq: jax.Array) -> tuple[jax.Array, jax.Array]:
    """W (eq. 3): padded lq [B, T, H, W, 3] -> (aligned frames, flows [.., 2])."""
    b, t, h, w, c = lq.shape
    if self.flow is None:
      return lq, jnp.zeros((b, t, h, w, 2), jnp.float32)
    with jax.named_scope('flow'):
      flows = flow_lib.pairwise_flows(self.flow, lq, self.num_neighbors)
    with jax.named_scope('warp'):
      aligned = flow_lib.warp(lq.reshape(b * t, h, w, c), flows.reshape(b * t, h, w, 2))
    return aligned.reshape(b, t, h, w, c), flows

  def encode(self, frames: jax.Array) -> jax.Array:
    """E (eq. 4): [B, T, H, W, 3] -> [B, T, H, W, C], frames folded into batch."""
    b, t, h, w, c = frames.shape
    with jax.named_scope('encoder'):
      feats = self.encoder(frames.reshape(b * t, h, w, c))
    return feats.reshape(b, t, h, w, -1)

  def decode(self, fused: jax.Array, lq: jax.Array, with_uncertainty: bool = False
             ) -> jax.Array | tuple[jax.Array, jax.Array]:
    """G (eq. 6): fused features (padded) + the unpadded lq -> restored frame
    (and U's scale map with `with_uncertainty`)."""
    _, _, h, w, _ = lq.shape
    hh, ww = self.scale * h, self.scale * w
    with jax.named_scope('skip'):  # of the padded frame too: as an exported graph sees it
      skip = bicubic.phases(self.pad(lq)[:, self.num_neighbors], self.scale)
    with jax.named_scope('decoder'):
      features = self.decoder.features(fused)
      restored = flow_lib.crop(self.decoder.upsample(features, skip), hh, ww)
    if not with_uncertainty:
      return restored
    with jax.named_scope('uncertainty'):
      scale_map = flow_lib.crop(self.uncertainty_head(features), hh, ww)
    return restored, scale_map

  def _fused(self, lq: jax.Array) -> jax.Array:
    padded = self.pad(lq)
    if self.warp_features:
      return self.fuse(self.align_encoded(padded, self.encode(padded)))
    aligned, _ = self.align(padded)
    return self.fuse(self.encode(aligned))

  def fuse(self, feats: jax.Array) -> jax.Array:
    """Phi (eq. 5): aligned features [B, T, H, W, C] -> fused [B, H, W, C]."""
    with jax.named_scope('fusion'):
      fused, _ = self.fusion(feats, self.num_neighbors)
    return fused

  def align_encoded(self, padded: jax.Array, feats: jax.Array) -> jax.Array:
    """W on features (warp_features): the padded window [B, T, H, W, 3] and its
    frames' features [B, T, H, W, C] -> the features warped to the reference."""
    (b, t, h, w, c), k = feats.shape, self.num_neighbors
    if self.flow is None:
      return feats
    with jax.named_scope('flow'):
      flows = flow_lib.pairwise_flows(self.flow, padded, k)
    with jax.named_scope('warp'):  # the neighbours: the reference's zero flow is a no-op
      nbrs = lambda x: jnp.concatenate([x[:, :k], x[:, k + 1:]], 1).reshape(-1, h, w, x.shape[-1])
      warped = flow_lib.warp(nbrs(feats), nbrs(flows)).reshape(b, t - 1, h, w, c)
    return jnp.concatenate([warped[:, :k], feats[:, k:k + 1], warped[:, k:]], axis=1)

  def encode_frames(self, frames: jax.Array) -> jax.Array:
    """warp_features: frames [N, h, w, 3] -> their features [N, H, W, C], padded as a
    window's (what `restore_encoded` takes): once per frame of a video."""
    if not self.warp_features:
      raise ValueError('ClarityNetSR: encode_frames needs warp_features (this model '
                       'encodes warped frames: their features depend on the window)')
    return self.encode(self._pad_frames(frames.astype(jnp.float32))[None])[0]

  def restore_encoded(self, lq: jax.Array, feats: jax.Array, with_uncertainty: bool = False
                      ) -> jax.Array | tuple[jax.Array, jax.Array]:
    """warp_features: a window lq [B, 2K+1, h, w, 3] and its frames' `encode_frames`
    [B, 2K+1, H, W, C] -> __call__'s (or `with_uncertainty`'s) result, no encoder."""
    padded = self.pad(lq)
    if not self.warp_features or feats.shape[:4] != padded.shape[:4]:
      raise ValueError(f'ClarityNetSR(warp_features={self.warp_features}): features '
                       f'{tuple(feats.shape)} for the padded window {tuple(padded.shape)}')
    if with_uncertainty and self.uncertainty_head is None:
      raise ValueError('ClarityNetSR: this model has no uncertainty head')
    return self.decode(self.fuse(self.align_encoded(padded, feats)), lq, with_uncertainty)

  def __call__(self, lq: jax.Array) -> jax.Array:
    """lq [B, 2K+1, h, w, 3] in [0, 1] -> [B, s h, s w, 3] float32."""
    return self.decode(self._fused(lq), lq)

  @property
  def has_uncertainty(self) -> bool:
    return self.uncertainty_head is not None

  def with_uncertainty(self, lq: jax.Array) -> tuple[jax.Array, jax.Array]:
    """lq -> (restored [B, s h, s w, 3], b [B, s h, s w]): the frame and the Laplace
    scale of its error per pixel (needs the head: model.uncertainty)."""
    if self.uncertainty_head is None:
      raise ValueError('ClarityNetSR: this model has no uncertainty head')
    return self.decode(self._fused(lq), lq, with_uncertainty=True)


def _check_task(scale: int, num_neighbors: int) -> None:
  if not isinstance(scale, numbers.Integral) or scale not in _SCALES:
    raise ValueError(f'ClarityNetSR: scale must be one of {_SCALES}, got {scale!r}')
  if not isinstance(num_neighbors, numbers.Integral) or num_neighbors < 0:
    raise ValueError(
        f'ClarityNetSR: num_neighbors (K) must be an int >= 0, got {num_neighbors!r}')


def _as_dtype(dtype: str | jnp.dtype) -> jnp.dtype:
  name = jnp.dtype(dtype).name if not isinstance(dtype, str) else dtype
  if name not in _DTYPES:
    raise ValueError(f'ClarityNetSR: dtype must be one of {_DTYPES}, got {dtype!r}')
  return jnp.dtype(name)


def create_model(variant: str, *, scale: int, num_neighbors: int,
                 use_alignment: bool = True, use_attention: bool = True,
                 uncertainty: bool = False, warp_features: bool = False,
                 dtype: str | jnp.dtype = 'float32', rngs: nnx.Rngs) -> ClarityNetSR:
  """The factory: a named size from VARIANTS, parameters always in float32."""
  if variant not in VARIANTS:
    raise ValueError(
        f'ClarityNetSR: unknown variant {variant!r}; choose from {sorted(VARIANTS)}')
  _check_task(scale, num_neighbors)
  return ClarityNetSR(scale=scale, num_neighbors=num_neighbors,
                      use_alignment=use_alignment, use_attention=use_attention,
                      uncertainty=uncertainty, warp_features=warp_features,
                      dtype=_as_dtype(dtype),
                      param_dtype=jnp.float32,
                      rngs=rngs, **VARIANTS[variant])


def model_from_config(config: Any, rngs: nnx.Rngs, *, dtype: str | None = None
                      ) -> ClarityNetSR:
  """The model a configs/default.py ConfigDict asks for; `dtype` overrides the
  config's computation dtype (the benchmark times both)."""
  if config.model.variant not in VARIANTS:  # the user's field: one line, not a traceback
    raise errors.ConfigError(f'config.model.variant: unknown variant '
                             f'{config.model.variant!r}; choose from {sorted(VARIANTS)}')
  return create_model(config.model.variant, scale=config.scale,
                      num_neighbors=config.num_neighbors,
                      use_alignment=config.model.use_alignment,
                      use_attention=config.model.use_attention,
                      uncertainty=config.model.get('uncertainty', False),
                      warp_features=config.model.get('warp_features', False),
                      dtype=config.model.dtype if dtype is None else dtype, rngs=rngs)


def count_params(model: nnx.Module) -> int:
  """Number of trainable scalars (every nnx.Param leaf)."""
  return sum(x.size for x in jax.tree.leaves(nnx.state(model, nnx.Param)))
