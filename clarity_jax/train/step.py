"""The sharded train and eval steps: pure functions of (TrainState, batch).

TensorFlow-free on purpose: the benchmark and the GPU machine import this module
without the input pipeline. One jitted step serves every mesh: windows over
'data', and crop rows over 'space' when config.mesh.space > 1 (sharding.py).
"""

from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp
import ml_collections
import optax
from flax import nnx
from jax.sharding import Mesh

from clarity_jax import data
from clarity_jax import metrics
from clarity_jax import sharding
from clarity_jax.models import bicubic as bicubic_lib
from clarity_jax.train import losses
from clarity_jax.train.state import (UNCERTAINTY_KEY, Params, TrainState,
                                     learning_rate_schedule, make_optimizer)

Batch = dict[str, jax.Array]
# (vgg_params, pred, target) -> scalar: the perceptual term with the frozen VGG's
# parameters passed in (replicated, never donated or trained).
PerceptualFn = Callable[[Params, jax.Array, jax.Array], jax.Array]


def apply_model(graphdef: nnx.GraphDef, params: Params, lq: jax.Array) -> jax.Array:
  return nnx.merge(graphdef, params)(lq)


def batch_shapes(config: ml_collections.ConfigDict) -> dict[str, tuple[int, ...]]:
  """Global shapes of a training batch: LQ windows and HR centres (and the next
  window's when the temporal loss is on), for step_config(config) (train/feed.py)."""
  return {k: (config.batch_size, *shape) for k, (shape, _) in data.example_spec(config).items()}


def compute_losses(config: ml_collections.ConfigDict, graphdef: nnx.GraphDef,
                   params: Params, batch: Batch, perceptual: PerceptualFn | None,
                   vgg_params: Params | None) -> tuple[jax.Array, dict[str, jax.Array]]:
  """Eq. (7): weighted Charbonnier + perceptual + edge (+ temporal); with the
  uncertainty head, + its NLL, from the same forward pass (only the head learns
  from it).

  With config.freeze_restorer only the NLL is differentiated (the restorer's
  terms, VGG included, would be computed for nothing); the Charbonnier of the
  frozen restoration is still reported.
  """
  model = nnx.merge(graphdef, params)
  if not config.model.get('uncertainty', False):
    return _restorer_losses(config, graphdef, params, batch, model(batch['lq']),
                            perceptual, vgg_params)
  out, scale = model.with_uncertainty(batch['lq'])
  nll = losses.laplace_nll(out, batch['hr'], scale)
  if config.get('freeze_restorer', False):
    charbonnier = losses.charbonnier(jax.lax.stop_gradient(out), batch['hr'],
                                     config.loss.charbonnier_eps)
    return nll, {'charbonnier': charbonnier, 'uncertainty': nll}
  total, terms = _restorer_losses(config, graphdef, params, batch, out, perceptual,
                                  vgg_params)
  return total + nll, {**terms, 'uncertainty': nll}


def _restorer_losses(config: ml_collections.ConfigDict, graphdef: nnx.GraphDef,
                     params: Params, batch: Batch, out: jax.Array,
                     perceptual: PerceptualFn | None, vgg_params: Params | None
                     ) -> tuple[jax.Array, dict[str, jax.Array]]:
  lc = config.loss
  hr = batch['hr']
  if lc.temporal_weight > 0:
    out_next = apply_model(graphdef, params, batch['lq_next'])
  with jax.named_scope('loss'):  # a stage of the profile (clarity_jax.profiling)
    terms = {
        'charbonnier': losses.charbonnier(out, hr, lc.charbonnier_eps),
        'edge': losses.edge_loss(out, hr, lc.charbonnier_eps),
    }
    weights = {'charbonnier': lc.charbonnier_weight, 'edge': lc.edge_weight}
    if perceptual is not None and lc.perceptual_weight > 0:
      terms['perceptual'] = perceptual(jax.lax.stop_gradient(vgg_params), out, hr)
      weights['perceptual'] = lc.perceptual_weight
    if lc.temporal_weight > 0:
      terms['temporal'] = losses.temporal_loss(out, out_next, hr, batch['hr_next'],
                                               lc.charbonnier_eps)
      weights['temporal'] = lc.temporal_weight
    total = sum(weights[k] * terms[k] for k in terms)
  return total, terms


def train_step(config: ml_collections.ConfigDict, graphdef: nnx.GraphDef,
               state: TrainState, batch: Batch, perceptual: PerceptualFn | None = None,
               vgg_params: Params | None = None
               ) -> tuple[TrainState, dict[str, jax.Array]]:
  """One optimiser step on a degraded batch (eq. (1) ran in the loader or, with
  where='device', in train/feed.py's stage just before)."""
  grad_fn = jax.value_and_grad(
      lambda p: compute_losses(config, graphdef, p, batch, perceptual, vgg_params),
      has_aux=True)
  (loss, terms), grads = grad_fn(state.params)
  with jax.named_scope('optimizer'):
    updates, opt_state = make_optimizer(config).update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    ema = state.ema_params
    if ema is not None:
      # Ramp the decay up so early EMA weights are not dominated by the random init.
      step = state.step.astype(jnp.float32)
      decay = jnp.minimum(config.ema_decay, (1.0 + step) / (10.0 + step))
      ema = optax.incremental_update(params, ema, 1.0 - decay)
      if config.get('freeze_restorer', False):  # bit for bit: no 0.999 a + 0.001 a
        ema = {**state.ema_params, UNCERTAINTY_KEY: ema[UNCERTAINTY_KEY]}
  metrics_out = {'loss': loss, 'grad_norm': optax.global_norm(grads),
                 'learning_rate': learning_rate_schedule(config)(state.step),
                 **{f'loss_{k}': v for k, v in terms.items()}}
  new_state = state.replace(step=state.step + 1, params=params, opt_state=opt_state,
                            ema_params=ema)
  return new_state, metrics_out


def eval_step(config: ml_collections.ConfigDict, graphdef: nnx.GraphDef,
              params: Params, batch: Batch) -> dict[str, jax.Array]:
  """Sums over the batch of PSNR/SSIM (RGB quantised to [0, 255], `scale` pixels of
  border cropped) of the model and of bicubic upsampling, plus the images for pictures."""
  k = config.num_neighbors
  out = jnp.clip(apply_model(graphdef, params, batch['lq']), 0.0, 1.0)
  bicubic = jnp.clip(bicubic_lib.upsample(batch['lq'][:, k], config.scale), 0.0, 1.0)
  crop = config.scale
  return {
      'psnr': jnp.sum(metrics.psnr(out, batch['hr'], crop_border=crop, quantize=True)),
      'ssim': jnp.sum(metrics.ssim(out, batch['hr'], crop_border=crop, quantize=True)),
      'bicubic_psnr': jnp.sum(metrics.psnr(bicubic, batch['hr'], crop_border=crop, quantize=True)),
      'bicubic_ssim': jnp.sum(metrics.ssim(bicubic, batch['hr'], crop_border=crop, quantize=True)),
      'output': out,
      'bicubic': bicubic,
  }


EVAL_SCALARS = ('psnr', 'ssim', 'bicubic_psnr', 'bicubic_ssim')


def jit_train_step(config: ml_collections.ConfigDict, graphdef: nnx.GraphDef, mesh: Mesh,
                   perceptual: PerceptualFn | None = None
                   ) -> Callable[..., tuple[TrainState, dict[str, jax.Array]]]:
  """train_step compiled over the mesh: step(state, batch, vgg_params).

  The state's buffers are donated (updated in place); windows are split over
  'data' and their rows over 'space' (sharding.batch_shardings), and XLA sums
  the gradients over both axes.
  """
  rep = sharding.replicated(mesh)

  def step(state, batch, vgg_params):
    return train_step(config, graphdef, state, batch, perceptual, vgg_params)

  return jax.jit(step, in_shardings=(rep, sharding.batch_shardings(mesh, batch_shapes(config)),
                                     rep),
                 out_shardings=(rep, rep), donate_argnums=(0,))


def jit_eval_step(config: ml_collections.ConfigDict, graphdef: nnx.GraphDef,
                  mesh: Mesh) -> Callable[..., dict[str, jax.Array]]:
  """eval_step over the mesh: metric sums replicated, images left split by batch
  (validation frames are not split by rows: sharding.global_batch(by_rows=False))."""
  bs, rep = sharding.data_sharding(mesh), sharding.replicated(mesh)
  out_shardings = {**{k: rep for k in EVAL_SCALARS}, 'output': bs, 'bicubic': bs}
  return jax.jit(lambda params, batch: eval_step(config, graphdef, params, batch),
                 in_shardings=(rep, bs), out_shardings=out_shardings)
