"""The one bicubic of clarity_jax: the baseline every restoration must beat.

Keys' cubic convolution with a = -0.5 (the definition of PIL, MATLAB's imresize and
jax.image.resize), pixel centres at half-integers, weights renormalised at the
frame border. It is exactly ClarityNetSR's global skip (eq. 6), so 'bicubic' in
training's validation line, in `enhance --compare` and in `evaluate` is one and the
same image, and a model whose residual is zero scores exactly the bicubic figure.
(OpenCV's INTER_CUBIC uses a = -0.75 and differs by up to a few grey levels at edges.)

It is computed as sub-pixel phases at the input's resolution, then a depth-to-space,
as the decoder's residual is: by a whole factor s, output pixel (s i + r, s j + q)
is a 5 x 5 weighted sum around input pixel (i, j), with weights that depend on the
phase (r, q) only. So the skip is added to the residual before one depth-to-space,
and nothing runs at the output's resolution but that (jax.image.resize, which this
equals to float rounding, computes dense weight matrices at the output's size; its
export ran 42 ms of OpenVINO's 140 at 720p: docs/performance.md).
"""

from __future__ import annotations

import functools

import dm_pix
import jax
import jax.numpy as jnp
import numpy as np

# Keys' kernel reaches 2 input pixels either side: 5 taps cover every phase.
TAPS = 5


def keys_cubic(t: np.ndarray, a: float = -0.5) -> np.ndarray:
  """Keys' cubic convolution kernel at distances t (in input pixels)."""
  t = np.abs(t)
  near = ((a + 2) * t - (a + 3)) * t * t + 1
  far = ((a * t - 5 * a) * t + 8 * a) * t - 4 * a
  return np.where(t <= 1, near, np.where(t < 2, far, 0.0))


@functools.lru_cache(maxsize=None)
def phase_kernel(scale: int, channels: int) -> np.ndarray:
  """[5, 5, channels, scale^2 channels] float32 HWIO convolution kernel: output
  channel (r scale + q) channels + c holds colour c's phase (r, q), the order
  dm-pix's depth_to_space reads. Block-diagonal over colours (a grouped
  convolution would order its outputs colour first)."""
  # Output pixel s i + r sits at input position i + (r + 1/2) / s - 1/2.
  offsets = (np.arange(scale) + 0.5) / scale - 0.5
  taps = np.arange(TAPS) - TAPS // 2
  w = keys_cubic(taps[None, :] - offsets[:, None])  # [phase, tap]
  planar = np.einsum('ry,qx->yxrq', w, w).reshape(TAPS, TAPS, scale * scale)
  kernel = np.zeros((TAPS, TAPS, channels, scale * scale, channels), np.float32)
  for c in range(channels):
    kernel[:, :, c, :, c] = planar
  kernel = kernel.reshape(TAPS, TAPS, channels, scale * scale * channels)
  kernel.flags.writeable = False  # cached: shared by every caller
  return kernel


def _conv(x: jax.Array, kernel: np.ndarray) -> jax.Array:
  pad = TAPS // 2
  return jax.lax.conv_general_dilated(
      x, jnp.asarray(kernel), (1, 1), ((pad, pad), (pad, pad)),
      dimension_numbers=('NHWC', 'HWIO', 'NHWC'),
      precision=jax.lax.Precision.HIGHEST)


def phases(x: jax.Array, scale: int) -> jax.Array:
  """[N, h, w, c] -> the bicubic's phases [N, h, w, scale^2 c] in float32:
  depth_to_space(phases(x, s), s) is the upsampled picture. Weights are
  renormalised over the taps inside the frame (zero padding, then divided by the
  same sum over ones), as jax.image.resize does."""
  x = x.astype(jnp.float32)
  c = x.shape[-1]
  kernel = phase_kernel(scale, c)
  # The weights inside the frame: ones through the kernel summed over its inputs.
  inside = _conv(jnp.ones_like(x[:1, ..., :1]), kernel.sum(axis=2, keepdims=True))
  return _conv(x, kernel) / inside


def upsample(x: jax.Array, scale: int) -> jax.Array:
  """[..., h, w, c] -> [..., scale h, scale w, c] in float32, not clipped."""
  *lead, h, w, c = x.shape
  x = x.astype(jnp.float32)
  if scale == 1:
    return x
  up = dm_pix.depth_to_space(phases(x.reshape(-1, h, w, c), scale), scale)
  return up.reshape(*lead, scale * h, scale * w, c)


@functools.partial(jax.jit, static_argnums=1)
def _upsample_clipped(frame: jax.Array, scale: int) -> jax.Array:
  return jnp.clip(upsample(frame, scale), 0.0, 1.0)


def upsample_frame(frame: np.ndarray, scale: int) -> np.ndarray:
  """One host frame [h, w, 3] (float in [0, 1] or uint8) -> float32 [s h, s w, 3] in
  [0, 1]: the bicubic picture as a file would hold it (clipped)."""
  frame = np.asarray(frame)
  if frame.dtype == np.uint8:
    frame = frame.astype(np.float32) / 255.0
  return np.asarray(_upsample_clipped(frame, scale))
