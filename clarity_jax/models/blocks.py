"""The parts both networks are built from (claritynet.py's window, recurrent.py's
clip): residual blocks, the shared encoder E, the decoder G with sub-pixel
upsampling, the uncertainty head U, the bicubic global skip."""

import math
import numbers

import dm_pix
import jax
import jax.numpy as jnp
from flax import nnx

from clarity_jax.models import bicubic

SCALES = (1, 2, 4)
# BasicSR's ResidualBlockNoBN initialisation: residual branches start at 0.1 of
# the default scale, so a deep stack starts near the identity and trains stably
# without normalisation layers.
RESIDUAL_INIT = nnx.initializers.variance_scaling(0.01, 'fan_in',
                                                   'truncated_normal')


# The uncertainty head's scale b (in [0, 1] image units) starts near 3/255, a
# typical restoration error, and never goes below a tenth of a grey level, where
# |e| / b would overflow on a perfect pixel.
UNCERTAINTY_INIT = 3.0 / 255.0
UNCERTAINTY_FLOOR = 0.1 / 255.0


def lrelu(x: jax.Array) -> jax.Array:
  return nnx.leaky_relu(x, 0.1)


class ResidualBlock(nnx.Module):
  """x + conv(lrelu(conv(x))), no normalisation (as EDSR / BasicSR)."""

  def __init__(self, features: int, *, dtype: jnp.dtype,
               param_dtype: jnp.dtype, rngs: nnx.Rngs):
    self.conv1 = nnx.Conv(features, features, (3, 3), dtype=dtype,
                          param_dtype=param_dtype, rngs=rngs)
    self.conv2 = nnx.Conv(features, features, (3, 3), dtype=dtype,
                          param_dtype=param_dtype, kernel_init=RESIDUAL_INIT,
                          rngs=rngs)

  def __call__(self, x: jax.Array) -> jax.Array:
    return x + self.conv2(lrelu(self.conv1(x)))


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
    x = lrelu(self.conv_in(frames - 0.5))
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
    return lrelu(self.conv_body(y) + x)

  def upsample(self, features: jax.Array) -> jax.Array:
    """Last features -> residual image [B, s h, s w, 3] (computation dtype)."""
    return dm_pix.depth_to_space(self.conv_out(features), self.scale)

  def __call__(self, fused: jax.Array) -> jax.Array:
    return self.upsample(self.features(fused))


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
                             param_dtype=param_dtype, kernel_init=RESIDUAL_INIT,
                             bias_init=nnx.initializers.constant(bias), rngs=rngs)

  def __call__(self, features: jax.Array) -> jax.Array:
    """features [B, h, w, F] -> b [B, s h, s w] float32, >= UNCERTAINTY_FLOOR."""
    x = lrelu(self.conv_in(jax.lax.stop_gradient(features)))
    raw = dm_pix.depth_to_space(self.conv_out(x), self.scale)[..., 0]
    return jax.nn.softplus(raw.astype(jnp.float32)) + UNCERTAINTY_FLOOR


def upsample_reference(lq: jax.Array, ref_index: int, scale: int) -> jax.Array:
  """The global skip: the reference frame, bicubic-upsampled (bicubic.py), in float32."""
  return bicubic.upsample(lq[:, ref_index], scale)


def check_task(scale: int, num_neighbors: int) -> None:
  if not isinstance(scale, numbers.Integral) or scale not in SCALES:
    raise ValueError(f'ClarityNetSR: scale must be one of {SCALES}, got {scale!r}')
  if not isinstance(num_neighbors, numbers.Integral) or num_neighbors < 0:
    raise ValueError(
        f'ClarityNetSR: num_neighbors (K) must be an int >= 0, got {num_neighbors!r}')


