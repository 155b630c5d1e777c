"""Resampling inside ClarityNetSR: integer-factor upsampling, box averages, edge padding.

The network only ever enlarges by whole factors: the flow pyramid and the spatial
attention by 2 through `upsample` (bilinear), the global skip by the scale s through
bicubic.py's phases. ONNX export gives it the op that runs at any frame size (Resize with
fixed scales, inference/onnx_export.py); jax.image.resize converts only to fixed
output sizes; `edge_pad` gets Pad(mode='edge'), as jnp.pad's edge mode is a
concatenation that jax2onnx sizes wrongly on symbolic sizes; `box_average` gets
AveragePool, where jax2onnx's conversion of a pool is a convolution over four
spatial axes that OpenVINO refuses.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

METHODS = ('bilinear',)


def upsample(x: jax.Array, factor: int, method: str) -> jax.Array:
  """[N, h, w, C] -> [N, factor h, factor w, C], pixel centres at half-integers.

  jax.image.resize's kernel, weights renormalised at the border. Antialiasing only
  matters when shrinking, so it is off (ONNX has none).
  """
  if method not in METHODS:
    raise ValueError(f'upsample: method must be one of {METHODS}, got {method!r}')
  n, h, w, c = x.shape
  return jax.image.resize(x, (n, factor * h, factor * w, c), method, antialias=False)


def box_average(x: jax.Array, window: int, stride: int = 1) -> jax.Array:
  """[N, h, w, C] -> the mean over each `window` x `window` square, no padding
  ('VALID'), every `stride` pixels: [N, (h - window) // stride + 1, ..., C]."""
  return nnx.avg_pool(x, window_shape=(window, window), strides=(stride, stride))


def edge_pad(x: jax.Array, rows: tuple[int, int], cols: tuple[int, int]) -> jax.Array:
  """[N, h, w, C] -> [N, h + sum(rows), w + sum(cols), C], border pixels repeated
  (before, after) each axis; no padding returns x itself."""
  if not any(rows) and not any(cols):
    return x
  return jnp.pad(x, ((0, 0), rows, cols, (0, 0)), mode='edge')
