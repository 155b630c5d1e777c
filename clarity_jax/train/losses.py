"""The terms of the objective, eq. (7): L = l1*L_rec + lp*L_perc + le*L_edge (+ lt*L_temp).

Each term is a pure function of arrays returning a float32 scalar, so the train step
(which owns the weights, config.loss.*) can jit, shard and differentiate them freely.
Images are NHWC in [0, 1]. No TensorFlow here: this module must import on machines
that only have JAX.
"""

from collections.abc import Sequence

from flax import nnx
import jax
import jax.numpy as jnp

from clarity_jax.models import vgg as vgg_lib


def charbonnier(pred: jax.Array, target: jax.Array, eps: float = 1e-3) -> jax.Array:
  """mean(sqrt((pred - target)^2 + eps^2)): a smooth L1, robust to outliers.

  The eps^2 keeps the gradient finite at zero error (plain L1 is not differentiable
  there); its floor of `eps` is kept, as in the usual definition (LapSRN, EDVR).
  """
  diff = pred.astype(jnp.float32) - target.astype(jnp.float32)
  return jnp.mean(jnp.sqrt(diff * diff + eps * eps))


def image_gradients(x: jax.Array) -> tuple[jax.Array, jax.Array]:
  """Forward finite differences (dy, dx) over H and W, valid region only.

  Hand-written rather than dm-pix/tf.image style gradients that zero-pad the last
  row/column: the padding would add constant border terms to the loss.
  """
  return x[..., 1:, :, :] - x[..., :-1, :, :], x[..., :, 1:, :] - x[..., :, :-1, :]


def edge_loss(pred: jax.Array, target: jax.Array, eps: float = 1e-3) -> jax.Array:
  """Charbonnier between the finite-difference image gradients of pred and target.

  The mean of the vertical and the horizontal term; it rewards sharp, well placed
  edges, which the pixel loss alone tends to smooth.
  """
  pred_dy, pred_dx = image_gradients(pred.astype(jnp.float32))
  target_dy, target_dx = image_gradients(target.astype(jnp.float32))
  return 0.5 * (charbonnier(pred_dy, target_dy, eps)
                + charbonnier(pred_dx, target_dx, eps))


def perceptual_loss(vgg: 'vgg_lib.VGG19 | tuple[nnx.GraphDef, nnx.State]',
                    pred: jax.Array, target: jax.Array,
                    layers: Sequence[str]) -> jax.Array:
  """Mean over `layers` of the L1 distance between VGG19 features of pred and target.

  `vgg` is a VGG19 module or its `nnx.split` (graphdef, state) pair, the form to pass
  into a `jax.jit` step as a separate, non-trained argument. The VGG is frozen: its
  parameters go through stop_gradient, so no gradient (or optimizer state) ever
  reaches them. Pred and target run through the network as one batch.
  """
  if isinstance(vgg, vgg_lib.VGG19):
    graphdef, state = nnx.split(vgg)
  else:
    graphdef, state = vgg
  state = jax.lax.stop_gradient(state)
  both = jnp.concatenate([pred.astype(jnp.float32),
                          jax.lax.stop_gradient(target.astype(jnp.float32))])
  features = vgg_lib.vgg_features(graphdef, state, both, layers)
  n = pred.shape[0]
  terms = [jnp.mean(jnp.abs(f[:n].astype(jnp.float32) - f[n:].astype(jnp.float32)))
           for f in (features[name] for name in layers)]
  return sum(terms) / len(terms)


def laplace_nll(pred: jax.Array, target: jax.Array, scale: jax.Array) -> jax.Array:
  """mean(|target - pred|_rgb / b + log b): the Laplace negative log-likelihood of
  the error (up to log 2), with one scale b [..., H, W] per pixel shared by RGB.

  Its minimum over b is b = the mean absolute error over RGB, so b learns the
  expected L1 error of each pixel, the error the Charbonnier term measures. The
  prediction is held fixed (stop_gradient): only b learns from this term
  (heteroscedastic regression, Kendall & Gal 2017, with the mean frozen).
  """
  err = jnp.mean(jnp.abs(target.astype(jnp.float32)
                         - jax.lax.stop_gradient(pred.astype(jnp.float32))), axis=-1)
  scale = scale.astype(jnp.float32)
  return jnp.mean(err / scale + jnp.log(scale))


def temporal_loss(out_t: jax.Array, out_next: jax.Array, hr_t: jax.Array,
                  hr_next: jax.Array, eps: float = 1e-3) -> jax.Array:
  """Charbonnier between (out_next - out_t) and (hr_next - hr_t).

  Penalises frame-to-frame change the ground truth does not have (flicker, ghosting)
  while leaving real motion alone.
  """
  out_t, out_next, hr_t, hr_next = (a.astype(jnp.float32)
                                    for a in (out_t, out_next, hr_t, hr_next))
  return charbonnier(out_next - out_t, hr_next - hr_t, eps)
