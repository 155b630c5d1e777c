"""The sharded train and eval steps: pure functions of (TrainState, batch).

TensorFlow-free on purpose: the benchmark and the GPU machine import this module
without the input pipeline. The model is split once into a static graph definition
and a plain nested dict of parameters, so the state is an ordinary pytree that jit,
optax and orbax all take as is.
"""

from __future__ import annotations

from typing import Any, Callable

import flax.struct
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
from flax import nnx
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from clarity_jax.train import losses
from clarity_jax import metrics
from clarity_jax.models import claritynet

Params = Any  # nested dict of arrays
Batch = dict[str, jax.Array]
# (vgg_params, pred, target) -> scalar: the perceptual term with the frozen VGG's
# parameters passed in (replicated, never donated or trained).
PerceptualFn = Callable[[Params, jax.Array, jax.Array], jax.Array]


@flax.struct.dataclass
class TrainState:
  step: jax.Array
  params: Params
  opt_state: optax.OptState
  ema_params: Params | None  # None when config.ema_decay == 0

  @property
  def eval_params(self) -> Params:
    """EMA weights when kept (they evaluate and export better), else the raw ones."""
    return self.params if self.ema_params is None else self.ema_params


def learning_rate_schedule(config: ml_collections.ConfigDict) -> optax.Schedule:
  """Linear warmup to config.learning_rate, then cosine decay (DESIGN.md eq. 7)."""
  return optax.warmup_cosine_decay_schedule(
      init_value=0.0,
      peak_value=config.learning_rate,
      warmup_steps=config.warmup_steps,
      decay_steps=max(config.num_train_steps, config.warmup_steps + 1),
      end_value=config.learning_rate * config.end_learning_rate_factor)


def make_optimizer(config: ml_collections.ConfigDict) -> optax.GradientTransformation:
  # Weight decay on kernels only: decaying biases or attention temperatures
  # only hurts.
  def decay_mask(params):
    return jax.tree_util.tree_map_with_path(
        lambda path, _: getattr(path[-1], 'key', None) == 'kernel', params)

  return optax.chain(
      optax.clip_by_global_norm(config.grad_clip_norm),
      optax.adamw(learning_rate_schedule(config), b1=0.9, b2=0.99,
                  weight_decay=config.weight_decay, mask=decay_mask))


def create_model(config: ml_collections.ConfigDict, seed: int) -> nnx.Module:
  return claritynet.model_from_config(config, nnx.Rngs(seed))


def init_state(config: ml_collections.ConfigDict,
               graphdef_out: list | None = None) -> TrainState:
  """A fresh state; pure, so it can run under jax.eval_shape or jit."""
  graphdef, state = nnx.split(create_model(config, config.seed))
  if graphdef_out is not None:
    graphdef_out.append(graphdef)
  params = nnx.to_pure_dict(state)
  return TrainState(
      step=jnp.zeros((), jnp.int32),
      params=params,
      opt_state=make_optimizer(config).init(params),
      ema_params=params if config.ema_decay > 0 else None)


def create_state(config: ml_collections.ConfigDict, mesh: Mesh) -> TrainState:
  """A fresh state, replicated over the mesh.

  On CPU it is compiled with XLA's backend optimisation off: it runs once, and
  its random initialisation (hundreds of small ops: threefry, erf_inv) took
  longer to optimise than to run (tiny 12.5 s -> 1.7 s to compile, base
  12.9 s -> 4.2 s, 2-core VM; docs/performance.md). Other backends keep their
  defaults (not measured there).
  """
  init = jax.jit(lambda: init_state(config), out_shardings=replicated(mesh)).lower()
  options = ({'xla_backend_optimization_level': 0}
             if jax.default_backend() == 'cpu' else None)
  return init.compile(compiler_options=options)()


def model_graphdef(config: ml_collections.ConfigDict) -> nnx.GraphDef:
  """The model's static structure, without allocating its parameters."""
  out = []
  jax.eval_shape(lambda: init_state(config, out))
  return out[0]


def apply_model(graphdef: nnx.GraphDef, params: Params, lq: jax.Array) -> jax.Array:
  return nnx.merge(graphdef, params)(lq)


def batch_shapes(config: ml_collections.ConfigDict) -> dict[str, tuple[int, ...]]:
  """Global shapes of a training batch: LQ windows and HR centres (and the next
  window's when the temporal loss is on)."""
  b, t = config.batch_size, 2 * config.num_neighbors + 1
  c, s = config.data.crop_size, config.scale
  shapes = {'lq': (b, t, c, c, 3), 'hr': (b, s * c, s * c, 3)}
  if config.loss.temporal_weight > 0:
    shapes.update(lq_next=shapes['lq'], hr_next=shapes['hr'])
  return shapes


def bicubic_upsample(lq_centre: jax.Array, scale: int) -> jax.Array:
  """The baseline every restoration must beat: bicubic upsampling of the LQ centre."""
  b, h, w, c = lq_centre.shape
  return jax.image.resize(lq_centre, (b, h * scale, w * scale, c), 'bicubic')


def compute_losses(config: ml_collections.ConfigDict, graphdef: nnx.GraphDef,
                   params: Params, batch: Batch, perceptual: PerceptualFn | None,
                   vgg_params: Params | None) -> tuple[jax.Array, dict[str, jax.Array]]:
  """Eq. (7): weighted Charbonnier + perceptual + edge (+ temporal)."""
  lc = config.loss
  out = apply_model(graphdef, params, batch['lq'])
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
               vgg_params: Params | None = None) -> tuple[TrainState, dict[str, jax.Array]]:
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
  bicubic = jnp.clip(bicubic_upsample(batch['lq'][:, k], config.scale), 0.0, 1.0)
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


# ---- Sharding -----------------------------------------------------------------

def make_mesh(devices: list[jax.Device] | None = None) -> Mesh:
  """Data parallel over every device of every host: one 'data' axis."""
  devices = jax.devices() if devices is None else devices
  return Mesh(devices, ('data',))


def replicated(mesh: Mesh) -> NamedSharding:
  return NamedSharding(mesh, P())


def batch_sharding(mesh: Mesh) -> NamedSharding:
  """Leading (batch) axis split over 'data'; everything else whole."""
  return NamedSharding(mesh, P('data'))


def global_batch(mesh: Mesh, local_batch: dict[str, Any]) -> Batch:
  """Each host's numpy batch becomes one slice of a global jax.Array."""
  sharding = batch_sharding(mesh)
  return {k: jax.make_array_from_process_local_data(sharding, v)
          for k, v in local_batch.items()}


def jit_train_step(config: ml_collections.ConfigDict, graphdef: nnx.GraphDef, mesh: Mesh,
                   perceptual: PerceptualFn | None = None
                   ) -> Callable[..., tuple[TrainState, dict[str, jax.Array]]]:
  """train_step compiled over the mesh: step(state, batch, vgg_params).

  The state's buffers are donated (updated in place); the batch is split over the
  'data' axis and gradients are all-reduced by XLA.
  """
  rep = replicated(mesh)

  def step(state, batch, vgg_params):
    return train_step(config, graphdef, state, batch, perceptual, vgg_params)

  return jax.jit(step, in_shardings=(rep, batch_sharding(mesh), rep),
                 out_shardings=(rep, rep), donate_argnums=(0,))


def jit_eval_step(config: ml_collections.ConfigDict, graphdef: nnx.GraphDef,
                  mesh: Mesh) -> Callable[..., dict[str, jax.Array]]:
  """eval_step over the mesh: metric sums replicated, images left split by batch."""
  bs, rep = batch_sharding(mesh), replicated(mesh)
  out_shardings = {**{k: rep for k in EVAL_SCALARS}, 'output': bs, 'bicubic': bs}
  return jax.jit(lambda params, batch: eval_step(config, graphdef, params, batch),
                 in_shardings=(rep, bs), out_shardings=out_shardings)


def local_rows(x: jax.Array) -> np.ndarray:
  """This host's rows of a batch-sharded global array, in batch order."""
  shards = sorted(x.addressable_shards, key=lambda s: s.index[0].start or 0)
  seen, rows = set(), []
  for shard in shards:
    start = shard.index[0].start or 0
    if start not in seen:  # replicas along other axes hold the same rows
      seen.add(start)
      rows.append(np.asarray(shard.data))
  return np.concatenate(rows, axis=0)
