"""ClarityNetSR run recurrently: every frame encoded once, features carried along the clip.

  lq clip [B, T, h, w, 3]
    -> E: the shared encoder, once per frame                     [B, T, H, W, C]
    -> W: flow from each frame to its previous and its next one (the same
          estimator, at <= h/2)
    -> backward pass (t = T-1 .. 0): b_t = P_b(e_t, warp(b_{t+1}, flow t->t+1))
       forward pass  (t = 0 .. T-1): f_t = P_f(e_t, warp(f_{t-1}, flow t->t-1))
    -> Phi: the attention fusion of [b_t, e_t, f_t] with e_t as the reference
    -> G: the decoder and the bicubic skip of frame t
    -> [B, T, s h, s w, 3] float32: every frame restored

Same parts as the window network (blocks.py), connected as BasicVSR connects
them: a window of 2K+1 frames re-encodes and re-aligns every frame for each of its
2K+1 outputs, here each frame is encoded once and aligned twice (to its two
neighbours), and what it carries reaches the whole clip, not K frames each way.

Cleaning. RealBasicVSR cleans the frames before propagating, because propagated
*pixels* carry compression artefacts along the clip and amplify them. What
propagates here are encoder features, and the encoder is that cleaning stage: a
residual stack applied to each frame alone, trained through every frame's loss.
The propagation blocks then see the current frame's cleaned features beside the
carried state at every step, and the attention weighs the state against the
frame (a state that disagrees loses its weight to the frame itself).

Warping uses the flow from the frame being restored to its neighbour, so the
state lands on the current frame's grid, as the window network lands its
neighbours on the reference's.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
from flax import nnx

from clarity_jax.models import blocks
from clarity_jax.models import flow as flow_lib
from clarity_jax.models import fusion as fusion_lib
from clarity_jax.models import resample

# The fusion sees three 'frames' per output: backward state, the frame, forward state.
_FRAME = 1


class Propagation(nnx.Module):
  """One direction's step: the current features and the warped carried state ->
  the new state (a 3x3 merge, then residual blocks)."""

  def __init__(self, features: int, num_blocks: int, *, dtype: jnp.dtype,
               param_dtype: jnp.dtype, rngs: nnx.Rngs):
    self.merge = nnx.Conv(2 * features, features, (3, 3), dtype=dtype,
                          param_dtype=param_dtype, rngs=rngs)
    self.blocks = nnx.List([
        blocks.ResidualBlock(features, dtype=dtype, param_dtype=param_dtype,
                                 rngs=rngs)
        for _ in range(num_blocks)])

  def __call__(self, feats: jax.Array, carried: jax.Array) -> jax.Array:
    x = nnx.leaky_relu(self.merge(jnp.concatenate([feats, carried], axis=-1)), 0.1)
    for block in self.blocks:
      x = block(x)
    return x


class RecurrentClarityNetSR(nnx.Module):
  """Bidirectional recurrent ClarityNetSR (module doc).

  Call on lq [B, T, h, w, 3] (float, [0, 1], any T >= 1) to get every frame restored,
  [B, T, s h, s w, 3] float32. `num_neighbors` only names the training clips' length
  (2K+1 frames): the network itself takes clips of any length.
  """

  propagation = 'recurrent'

  def __init__(self, *, scale: int, num_neighbors: int, encoder_features: int,
               encoder_blocks: int, decoder_features: int, decoder_blocks: int,
               flow_features: int, flow_levels: int, propagation_blocks: int = 1,
               use_alignment: bool = True, use_attention: bool = True,
               uncertainty: bool = False, dtype: jnp.dtype = jnp.float32,
               param_dtype: jnp.dtype = jnp.float32, rngs: nnx.Rngs):
    blocks.check_task(scale, num_neighbors)
    self.scale = int(scale)
    self.num_neighbors = int(num_neighbors)
    self.dtype = dtype
    kw = dict(dtype=dtype, param_dtype=param_dtype, rngs=rngs)
    self.flow = (flow_lib.FlowEstimator(features=flow_features, levels=flow_levels, **kw)
                 if use_alignment else None)
    self.pad_multiple = math.lcm(2, self.flow.multiple if self.flow is not None else 1)
    self.encoder = blocks.Encoder(encoder_features, encoder_blocks, **kw)
    self.backward_step = Propagation(encoder_features, propagation_blocks, **kw)
    self.forward_step = Propagation(encoder_features, propagation_blocks, **kw)
    self.fusion = fusion_lib.create(encoder_features, use_attention, **kw)
    self.decoder = blocks.Decoder(encoder_features, decoder_features, decoder_blocks,
                                  self.scale, **kw)
    self.uncertainty_head = (blocks.UncertaintyHead(decoder_features, self.scale, **kw)
                             if uncertainty else None)

  @property
  def has_uncertainty(self) -> bool:
    return self.uncertainty_head is not None

  def pad(self, lq: jax.Array) -> jax.Array:
    """Edge-pads h, w up to multiples of `pad_multiple` (checks the shape too)."""
    if lq.ndim != 5 or lq.shape[1] < 1 or lq.shape[-1] != 3 or min(lq.shape[2:4]) < 1:
      raise ValueError(f'RecurrentClarityNetSR: want lq [B, T, h, w, 3], got '
                       f'{tuple(lq.shape)}')
    return resample.edge_pad_frames(lq.astype(jnp.float32), self.pad_multiple)

  def neighbour_flows(self, frames: jax.Array) -> tuple[jax.Array, jax.Array]:
    """frames [B, T, H, W, 3] -> (to_previous, to_next), each [B, T-1, H, W, 2]:
    to_previous[:, i] aligns frame i to frame i+1, to_next[:, i] frame i+1 to
    frame i (backward flows, flow.py's convention), in one batched call."""
    b, t, h, w, c = frames.shape
    earlier, later = frames[:, :-1], frames[:, 1:]
    refs = jnp.concatenate([later, earlier], axis=1).reshape(-1, h, w, c)
    nbrs = jnp.concatenate([earlier, later], axis=1).reshape(-1, h, w, c)
    flows = self.flow(refs, nbrs).reshape(b, 2, t - 1, h, w, 2)
    return flows[:, 0], flows[:, 1]

  def propagate(self, feats: jax.Array, frames: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Encoded clip [B, T, H, W, C] -> (backward states, forward states), each
    [B, T, H, W, C]. A Python loop over frames, not lax.scan: T is the training
    clip or an inference chunk (7-16 frames), and a fixed graph exports as it is."""
    t = feats.shape[1]
    to_prev = to_next = None
    if self.flow is not None and t > 1:
      with jax.named_scope('flow'):
        to_prev, to_next = self.neighbour_flows(frames)
    align = lambda state, flows, i: (state if self.flow is None
                                     else flow_lib.warp(state, flows[:, i]))
    zero = jnp.zeros_like(feats[:, 0])
    backward = [self.backward_step(feats[:, t - 1], zero)]
    for i in range(t - 2, -1, -1):
      with jax.named_scope('warp'):
        carried = align(backward[-1], to_next, i)
      backward.append(self.backward_step(feats[:, i], carried))
    forward = [self.forward_step(feats[:, 0], zero)]
    for i in range(1, t):
      with jax.named_scope('warp'):
        carried = align(forward[-1], to_prev, i - 1)
      forward.append(self.forward_step(feats[:, i], carried))
    return jnp.stack(backward[::-1], axis=1), jnp.stack(forward, axis=1)

  def _features(self, lq: jax.Array) -> jax.Array:
    """lq [B, T, h, w, 3] -> the decoder's last features [B*T, H, W, F] (padded)."""
    frames = self.pad(lq)
    b, t, h, w, c = frames.shape
    with jax.named_scope('encoder'):
      feats = self.encoder(frames.reshape(b * t, h, w, c)).reshape(b, t, h, w, -1)
    with jax.named_scope('propagation'):
      backward, forward = self.propagate(feats, frames)
    trio = jnp.stack([backward, feats, forward], axis=2).reshape(b * t, 3, h, w, -1)
    with jax.named_scope('fusion'):
      fused, _ = self.fusion(trio, _FRAME)
    with jax.named_scope('decoder'):
      return self.decoder.features(fused)

  def _restore(self, lq: jax.Array, with_uncertainty: bool
               ) -> jax.Array | tuple[jax.Array, jax.Array]:
    b, t, h, w, c = lq.shape
    hh, ww = self.scale * h, self.scale * w
    features = self._features(lq)
    residual = flow_lib.crop(self.decoder.upsample(features), hh, ww)
    with jax.named_scope('skip'):
      skip = blocks.upsample_reference(
          lq.astype(jnp.float32).reshape(b * t, 1, h, w, c), 0, self.scale)
    restored = (skip + residual.astype(jnp.float32)).reshape(b, t, hh, ww, 3)
    if not with_uncertainty:
      return restored
    scale_map = flow_lib.crop(self.uncertainty_head(features), hh, ww)
    return restored, scale_map.reshape(b, t, hh, ww)

  def __call__(self, lq: jax.Array) -> jax.Array:
    """lq [B, T, h, w, 3] in [0, 1] -> [B, T, s h, s w, 3] float32."""
    return self._restore(lq, False)

  def with_uncertainty(self, lq: jax.Array) -> tuple[jax.Array, jax.Array]:
    """lq -> (restored [B, T, s h, s w, 3], b [B, T, s h, s w])."""
    if self.uncertainty_head is None:
      raise ValueError('RecurrentClarityNetSR: this model has no uncertainty head')
    return self._restore(lq, True)
