"""The training state and how it starts: parameters, AdamW with warmup and cosine
decay, and the EMA copy.

The model is split once into a static graph definition and a plain nested dict of
parameters, so the state is an ordinary pytree that jit, optax and orbax all take
as is.
"""

from __future__ import annotations

from typing import Any

import flax.struct
import jax
import jax.numpy as jnp
import ml_collections
import optax
from flax import nnx
from jax.sharding import Mesh

from clarity_jax import sharding
from clarity_jax.models import claritynet

Params = Any  # nested dict of arrays


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
  """Linear warmup to config.learning_rate, then cosine decay (eq. 7)."""
  return optax.warmup_cosine_decay_schedule(
      init_value=0.0,
      peak_value=config.learning_rate,
      warmup_steps=config.warmup_steps,
      decay_steps=max(config.num_train_steps, config.warmup_steps + 1),
      end_value=config.learning_rate * config.end_learning_rate_factor)


# The uncertainty head's parameters: models/claritynet.py's ClarityNetSR.uncertainty_head.
UNCERTAINTY_KEY = 'uncertainty_head'


def _adamw(config: ml_collections.ConfigDict) -> optax.GradientTransformation:
  # Weight decay on kernels only: decaying biases or attention temperatures
  # only hurts.
  def decay_mask(params):
    return jax.tree_util.tree_map_with_path(
        lambda path, _: getattr(path[-1], 'key', None) == 'kernel', params)

  return optax.chain(
      optax.clip_by_global_norm(config.grad_clip_norm),
      optax.adamw(learning_rate_schedule(config), b1=0.9, b2=0.99,
                  weight_decay=config.weight_decay, mask=decay_mask))


def make_optimizer(config: ml_collections.ConfigDict) -> optax.GradientTransformation:
  """AdamW with gradient clipping; with the uncertainty head, one per partition.

  The head and the restorer are clipped and stepped separately, so the head's
  gradients never change the restorer's updates (a shared global-norm clip would
  couple them): a run with the head trains the same restorer as one without.
  config.freeze_restorer leaves the restorer's weights exactly as they are, weight
  decay included, and keeps no optimiser state for them.
  """
  if not config.model.get('uncertainty', False):
    return _adamw(config)  # one chain: checkpoints from before the head still restore

  def labels(params):
    return {k: jax.tree.map(lambda _: k if k == UNCERTAINTY_KEY else 'restorer', v)
            for k, v in params.items()}

  restorer = optax.set_to_zero() if config.get('freeze_restorer', False) else _adamw(config)
  return optax.multi_transform({'restorer': restorer, UNCERTAINTY_KEY: _adamw(config)},
                               labels)


def init_state(config: ml_collections.ConfigDict) -> TrainState:
  """A fresh state; pure, so it can run under jax.eval_shape or jit."""
  params = nnx.to_pure_dict(nnx.state(
      claritynet.model_from_config(config, nnx.Rngs(config.seed))))
  return TrainState(
      step=jnp.zeros((), jnp.int32),
      params=params,
      opt_state=make_optimizer(config).init(params),
      ema_params=params if config.ema_decay > 0 else None)


def create_state(config: ml_collections.ConfigDict, mesh: Mesh) -> TrainState:
  """A fresh state, replicated over the mesh.

  On CPU it is compiled with XLA's backend optimisation off: it runs once, and
  its random initialisation (hundreds of small ops: threefry, erf_inv) took
  longer to optimise than to run (docs/performance.md). Other backends keep
  their defaults.
  """
  init = jax.jit(lambda: init_state(config), out_shardings=sharding.replicated(mesh)).lower()
  options = ({'xla_backend_optimization_level': 0}
             if jax.default_backend() == 'cpu' else None)
  return init.compile(compiler_options=options)()


def model_graphdef(config: ml_collections.ConfigDict) -> nnx.GraphDef:
  """The model's static structure, without allocating its parameters."""
  graphdef, _ = nnx.split(nnx.eval_shape(
      lambda: claritynet.model_from_config(config, nnx.Rngs(config.seed))))
  return graphdef
