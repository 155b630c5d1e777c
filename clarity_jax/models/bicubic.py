"""The one bicubic of clarity_jax: the baseline every restoration must beat.

Keys' cubic convolution with a = -0.5 (the definition of PIL, MATLAB's imresize and
jax.image.resize), pixel centres at half-integers, weights renormalised at the
frame border. It is exactly ClarityNetSR's global skip (eq. 6), so 'bicubic' in
training's validation line, in `enhance --compare` and in `evaluate` is one and the
same image, and a model whose residual is zero scores exactly the bicubic figure.
(OpenCV's INTER_CUBIC uses a = -0.75 and differs by up to a few grey levels at edges.)
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from clarity_jax.models import resample


def upsample(x: jax.Array, scale: int) -> jax.Array:
  """[..., h, w, c] -> [..., scale h, scale w, c] in float32, not clipped."""
  *lead, h, w, c = x.shape
  x = x.astype(jnp.float32)
  if scale == 1:
    return x
  return resample.upsample(x.reshape(-1, h, w, c), scale, 'cubic').reshape(
      *lead, scale * h, scale * w, c)


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
