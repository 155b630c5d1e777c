"""What a variant costs: parameters and XLA-counted FLOPs of one forward pass (the
variants table of claritynet.py and docs/architecture.md; docs/variants_table.py)."""

from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx

from clarity_jax.models.claritynet import count_params
from clarity_jax.models.claritynet import create_model


def measure_cost(variant: str, h: int = 180, w: int = 320, scale: int = 4,
                 num_neighbors: int = 2, dtype: str = 'float32',
                 batch: int = 1) -> dict[str, Any]:
  """Parameters and XLA-counted FLOPs of one forward pass (nothing is run).

  The FLOPs come from the compiled program's cost analysis on the default
  backend, so they count what XLA will execute (convs, resizes, softmax), not a
  hand formula; gathers (the warp) count as memory traffic, not FLOPs.
  """
  # Abstract parameters: shapes are all that compiling needs.
  model = nnx.eval_shape(lambda: create_model(
      variant, scale=scale, num_neighbors=num_neighbors, dtype=dtype,
      rngs=nnx.Rngs(0)))
  graphdef, params = nnx.split(model)

  def forward(p: nnx.State, x: jax.Array) -> jax.Array:
    return nnx.merge(graphdef, p)(x)

  lq = jax.ShapeDtypeStruct((batch, 2 * num_neighbors + 1, h, w, 3), jnp.float32)
  compiled = jax.jit(forward).lower(params, lq).compile()
  cost = compiled.cost_analysis()
  if isinstance(cost, (list, tuple)):  # older jax: one dict per device program
    cost = cost[0]
  return dict(variant=variant, params=count_params(model),
              gflops=float(cost['flops']) / 1e9, input_hw=(h, w), scale=scale,
              num_neighbors=num_neighbors, batch=batch,
              backend=jax.default_backend())
