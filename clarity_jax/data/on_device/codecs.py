"""The video codec's colour conversions on the device: codecs.py's exact integer
BT.601 arithmetic in JAX.

With eq. (1) on the device, the windows drawn for the video codec still go to the
host for x264 (train/feed.py); converting them to yuv420p there and back cost more
CPU than x264 itself (about 5 of 9 ms for a 5 x 64 x 64 window). Here they travel
as the planes x264 reads and writes. Integer arithmetic is exact on every backend:
these are codecs.rgb_to_yuv420p / yuv420p_to_rgb bit for bit, in int32 (every
intermediate stays below 2^30), not int64 (off by default in JAX).
"""

import jax
import jax.numpy as jnp
import numpy as np

from clarity_jax.data import codecs


def to_uint8(x: jax.Array) -> jax.Array:
  """files.to_uint8: float [0, 1] (NaN to 0, clipped, rounded half up) -> uint8."""
  x = jnp.clip(jnp.nan_to_num(x.astype(jnp.float32)), 0.0, 1.0)
  return (x * 255.0 + 0.5).astype(jnp.uint8)


def _dot(x: jax.Array, coeffs) -> jax.Array:
  return x[..., 0] * int(coeffs[0]) + x[..., 1] * int(coeffs[1]) + x[..., 2] * int(coeffs[2])


def rgb_to_yuv420p(rgb: jax.Array) -> jax.Array:
  """[..., H, W, 3] uint8 (H, W even) -> [..., 3H/2, W] uint8 yuv420p planes."""
  *lead, h, w, _ = rgb.shape
  x = rgb.astype(jnp.int32)
  y = ((_dot(x, codecs._RGB_TO_Y) + 32768) >> 16) + 16  # pylint: disable=protected-access

  def chroma(coeffs) -> jax.Array:
    c = _dot(x, coeffs).reshape(*lead, h // 2, 2, w // 2, 2).sum(axis=(-3, -1))
    return (((c + 131072) >> 18) + 128).reshape(*lead, -1)

  # The planes one after another, cut into rows of W (a chroma plane of H/2 x W/2
  # need not fill whole rows).
  planes = [y.reshape(*lead, -1), chroma(codecs._RGB_TO_CB), chroma(codecs._RGB_TO_CR)]  # pylint: disable=protected-access
  out = jnp.clip(jnp.concatenate(planes, axis=-1), 0, 255).astype(jnp.uint8)
  return out.reshape(*lead, 3 * h // 2, w)


def _upsample_chroma(c: jax.Array) -> jax.Array:
  """[..., h, w] -> [..., 2h, 2w] x 16: codecs._upsample_chroma."""
  *lead, h, w = c.shape
  p = jnp.pad(c, [(0, 0)] * len(lead) + [(1, 1), (1, 1)], mode='edge')
  rows = jnp.stack([3 * p[..., 1:-1, :] + p[..., :-2, :], 3 * p[..., 1:-1, :] + p[..., 2:, :]],
                   axis=-2).reshape(*lead, 2 * h, w + 2)
  return jnp.stack([3 * rows[..., 1:-1] + rows[..., :-2], 3 * rows[..., 1:-1] + rows[..., 2:]],
                   axis=-1).reshape(*lead, 2 * h, 2 * w)


def yuv420p_to_rgb(yuv: jax.Array) -> jax.Array:
  """The inverse of rgb_to_yuv420p: [..., 3H/2, W] uint8 -> [..., H, W, 3] uint8."""
  *lead, rows, w = yuv.shape
  h = rows * 2 // 3
  flat = yuv.astype(jnp.int32).reshape(*lead, rows * w)
  y = (flat[..., :h * w].reshape(*lead, h, w) - 16) * (16 * codecs._Y_TO_RGB)  # pylint: disable=protected-access
  n = h * w // 4
  cb, cr = (_upsample_chroma(flat[..., h * w + i * n:h * w + (i + 1) * n]
                             .reshape(*lead, h // 2, w // 2) - 128) for i in (0, 1))
  # pylint: disable=protected-access
  rgb = jnp.stack([y + codecs._CR_TO_R * cr, y + codecs._CB_TO_G * cb + codecs._CR_TO_G * cr,
                   y + codecs._CB_TO_B * cb], axis=-1)
  return jnp.clip((rgb + (1 << 19)) >> 20, 0, 255).astype(jnp.uint8)


def window_planes(windows: jax.Array) -> jax.Array:
  """Windows [B, T, h, w, 3] float -> the yuv420p planes that x264 reads, [B, T,
  3H/2, W] uint8 (H, W: h, w rounded up to even by repeating the last row/column),
  as codecs.video_codec converts them."""
  h, w = windows.shape[2:4]
  pad = [(0, 0), (0, 0), (0, h % 2), (0, w % 2), (0, 0)]
  return rgb_to_yuv420p(to_uint8(jnp.pad(windows, pad, mode='edge')))


def window_rgb(planes: jax.Array, height: int, width: int) -> jax.Array:
  """The inverse of window_planes: float32 [B, T, height, width, 3]."""
  rgb = yuv420p_to_rgb(planes)[:, :, :height, :width]
  # k / 255 as NumPy computes it: XLA would multiply by 1 / 255, 1 ulp away.
  return jnp.asarray(np.arange(256, dtype=np.float32) / 255.0)[rgb]
