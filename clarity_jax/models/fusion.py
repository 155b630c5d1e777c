"""Fusion Phi (eq. 5): temporal and spatial attention over aligned features.

Temporal attention weighs, at every pixel, each frame by how well its embedded
feature agrees with the reference's: weights = softmax over frames of
-scale * d_t, with d_t the squared distance between the embeddings e_t and
e_ref averaged over channels and a 5x5 patch. A negative distance, rather than
EDVR's dot product, makes the reference always score highest (its distance is
zero), so a neighbour that disagrees (misaligned, occluded, corrupted) loses its
weight to the reference and the output falls back towards the single-frame
result instead of ghosting. Spatial attention (as EDVR's TSA) then rescales the
fused feature with a mask computed at half resolution, for a wider context at a
quarter of the cost.
"""

import jax
import jax.numpy as jnp
from flax import nnx

from clarity_jax.models import resample

# Side of the window over which feature distances are averaged (a patch
# distance, as in non-local means). With single-pixel distances the noise of the
# reference pixel itself decides the weights; a 5x5 patch rejected corrupted
# neighbours better than 1x1 in the toy task of tests/test_model.py (reference
# weight 0.79 vs 0.67 on pure-noise neighbours) at no measurable cost.
_PATCH = 5


class TemporalAttention(nnx.Module):
  """Per-pixel softmax over frames of agreement with the reference feature."""

  def __init__(self, features: int, *, dtype: jnp.dtype,
               param_dtype: jnp.dtype, rngs: nnx.Rngs):
    # No bias: it would cancel in the differences e_t - e_ref.
    self.embed = nnx.Conv(features, features, (3, 3), use_bias=False,
                          dtype=dtype, param_dtype=param_dtype, rngs=rngs)
    # log of the distance scale (inverse temperature), learnt; exp(1) ~ 2.7
    # leaves agreeing neighbours near-equal weight at initialisation.
    self.log_scale = nnx.Param(jnp.ones((), param_dtype))

  def __call__(self, feats: jax.Array,
               ref_index: int) -> tuple[jax.Array, jax.Array]:
    """feats [B, T, h, w, C] -> (pooled [B, h, w, C], weights [B, T, h, w] f32)."""
    b, t, h, w, c = feats.shape
    emb = self.embed(feats.reshape(b * t, h, w, c)).reshape(b, t, h, w, c)
    emb = emb.astype(jnp.float32)  # distances and softmax in float32
    dist = jnp.mean(jnp.square(emb - emb[:, ref_index:ref_index + 1]), axis=-1)
    # Edge padding, not zeros (which would shrink border distances) nor
    # count_include_pad=False (whose divisor map XLA constant-folds slowly).
    r = _PATCH // 2
    dist = resample.edge_pad(dist.reshape(b * t, h, w, 1), (r, r), (r, r))
    dist = resample.box_average(dist, _PATCH).reshape(b, t, h, w)
    weights = jax.nn.softmax(-jnp.exp(self.log_scale[...]) * dist, axis=1)
    # A weighted sum over the T frames, not an einsum: a contraction of length T is
    # a poor matrix product, and its export (MatMul) moved every feature to a
    # frame-last layout first (OpenVINO: 9 ms of matrix product and 6 of transpose
    # at 720p; docs/performance.md).
    pooled = jnp.sum(weights[..., None].astype(feats.dtype) * feats, axis=1)
    return pooled, weights


class SpatialAttention(nnx.Module):
  """x * 2 sigmoid(a) + b, with (a, b) from a half-resolution conv branch."""

  def __init__(self, features: int, *, dtype: jnp.dtype,
               param_dtype: jnp.dtype, rngs: nnx.Rngs):
    conv = lambda i, o, **kw: nnx.Conv(i, o, (3, 3), dtype=dtype,
                                       param_dtype=param_dtype, rngs=rngs, **kw)
    self.down = conv(features, features, strides=2)
    self.mid = conv(features, features)
    self.out = conv(features, 2 * features)

  def __call__(self, x: jax.Array) -> jax.Array:
    """x [B, h, w, C] with even h, w -> same shape."""
    b, h, w, c = x.shape
    if h % 2 or w % 2:
      raise ValueError(f'SpatialAttention: want even sides, got {h}x{w}')
    y = nnx.leaky_relu(self.down(x), 0.1)
    y = nnx.leaky_relu(self.mid(y), 0.1)
    y = resample.upsample(y, 2, 'bilinear')
    att, add = jnp.split(self.out(y), 2, axis=-1)
    return x * 2 * nnx.sigmoid(att) + add


class AttentionFusion(nnx.Module):
  """Temporal attention, a 1x1 merge with the reference, then spatial attention.

  The reference feature is merged in beside the attention-weighted average
  because the decoder adds its residual to the upsampled *reference* frame: to
  remove the reference's own blur and noise it must see the reference apart
  from the average (with the average alone it cannot tell them apart).
  """

  def __init__(self, features: int, *, dtype: jnp.dtype = jnp.float32,
               param_dtype: jnp.dtype = jnp.float32, rngs: nnx.Rngs):
    self.temporal = TemporalAttention(features, dtype=dtype,
                                      param_dtype=param_dtype, rngs=rngs)
    self.merge = nnx.Conv(2 * features, features, (1, 1), dtype=dtype,
                          param_dtype=param_dtype, rngs=rngs)
    self.spatial = SpatialAttention(features, dtype=dtype,
                                    param_dtype=param_dtype, rngs=rngs)

  def __call__(self, feats: jax.Array,
               ref_index: int) -> tuple[jax.Array, jax.Array]:
    """feats [B, T, h, w, C] -> (fused [B, h, w, C], weights [B, T, h, w]).

    With T = 1 (the single-frame model, or a window cut to its reference) the
    temporal step is the identity and is skipped.
    """
    if feats.shape[1] == 1:
      pooled = feats[:, 0]
      weights = jnp.ones(feats.shape[:4], jnp.float32)
    else:
      pooled, weights = self.temporal(feats, ref_index)
    merged = _merge(self.merge, feats[:, ref_index], pooled)
    return self.spatial(merged), weights


class MeanFusion(nnx.Module):
  """Ablation (use_attention=False): a plain mean over frames, no attention.

  Keeps AttentionFusion's 1x1 merge with the reference, so that the ablation
  removes the attention and nothing else.
  """

  def __init__(self, features: int, *, dtype: jnp.dtype = jnp.float32,
               param_dtype: jnp.dtype = jnp.float32, rngs: nnx.Rngs):
    self.merge = nnx.Conv(2 * features, features, (1, 1), dtype=dtype,
                          param_dtype=param_dtype, rngs=rngs)

  def __call__(self, feats: jax.Array,
               ref_index: int) -> tuple[jax.Array, jax.Array]:
    t = feats.shape[1]
    weights = jnp.full(feats.shape[:4], 1.0 / t, jnp.float32)
    merged = _merge(self.merge, feats[:, ref_index], jnp.mean(feats, axis=1))
    return merged, weights


def _merge(conv: nnx.Conv, ref: jax.Array, pooled: jax.Array) -> jax.Array:
  return nnx.leaky_relu(conv(jnp.concatenate([ref, pooled], axis=-1)), 0.1)
