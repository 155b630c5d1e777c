"""The train step with the uncertainty head: it learns a known error scale, and it
never changes the restorer (train/step.py, train/state.py)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.ndimage
import scipy.stats
from flax import nnx

from clarity_jax.train import state as state_lib
from clarity_jax.train import step as step_lib

HEAD = state_lib.UNCERTAINTY_KEY


def _restorer_part(params):
  return {k: v for k, v in params.items() if k != HEAD}


def _train(config, state, batches):
  graphdef = state_lib.model_graphdef(config)
  step = jax.jit(lambda st, b: step_lib.train_step(config, graphdef, st, b))
  for batch in batches:
    state, metrics = step(state, batch)
  return state, metrics


def _random_batches(config, n, seed=0):
  rng = np.random.default_rng(seed)
  shapes = step_lib.batch_shapes(config)
  return [{k: rng.random(shapes[k], np.float32) for k in ('lq', 'hr')} for _ in range(n)]


def test_the_head_trains_the_same_restorer_as_no_head(tiny_config):
  """Same seed, same batches: the restorer's weights after three steps are those
  of a run without the head (separate clipping and optimiser partitions; the NLL
  sees the restoration through stop_gradient)."""
  plain = tiny_config(ema_decay=0.99)
  with_head = tiny_config(ema_decay=0.99, model__uncertainty=True)
  batches = _random_batches(plain, 3)
  a, _ = _train(plain, state_lib.init_state(plain), batches)
  b, metrics = _train(with_head, state_lib.init_state(with_head), batches)
  assert set(b.params) == set(a.params) | {HEAD}
  close = lambda x, y: np.testing.assert_allclose(x, y, rtol=1e-6, atol=1e-7)
  jax.tree.map(close, a.params, _restorer_part(b.params))
  jax.tree.map(close, a.ema_params, _restorer_part(b.ema_params))
  assert np.isfinite(float(metrics['loss_uncertainty']))
  # The head did learn: its weights moved from their initialisation.
  init = state_lib.init_state(with_head).params[HEAD]
  moved = jax.tree.map(lambda x, y: float(jnp.max(jnp.abs(x - y))), b.params[HEAD], init)
  assert max(jax.tree.leaves(moved)) > 1e-4


def test_freeze_restorer_leaves_the_restorer_bit_for_bit(tiny_config):
  config = tiny_config(ema_decay=0.99, model__uncertainty=True, freeze_restorer=True,
                       weight_decay=0.1)
  start = state_lib.init_state(config)
  before = jax.tree.map(np.asarray, _restorer_part(start.params))
  head_before = jax.tree.map(np.asarray, start.params[HEAD])
  state, metrics = _train(config, start, _random_batches(config, 3))
  jax.tree.map(np.testing.assert_array_equal, before, _restorer_part(state.params))
  jax.tree.map(np.testing.assert_array_equal, before, _restorer_part(state.ema_params))
  changed = jax.tree.map(lambda x, y: not np.array_equal(x, y), head_before,
                         state.params[HEAD])
  assert all(jax.tree.leaves(changed))
  # Only the NLL is optimised; the frozen restoration's Charbonnier is reported.
  assert set(metrics) >= {'loss_uncertainty', 'loss_charbonnier'}
  assert float(metrics['loss']) == pytest.approx(float(metrics['loss_uncertainty']))


def test_the_head_learns_a_known_error_scale(tiny_config):
  """Targets = inputs + Laplace noise whose scale follows the brightness (as shot
  noise does); the restorer is the identity (deblur-only, zero residual) and
  frozen, so the error is exactly the noise. A short head-only run must rank the
  pixels' predicted b like the true scale: Spearman >= 0.8."""
  config = tiny_config(scale=1, num_neighbors=0, model__uncertainty=True,
                       freeze_restorer=True, learning_rate=2e-2, warmup_steps=10,
                       num_train_steps=800, ema_decay=0.0, batch_size=8)
  state = state_lib.init_state(config)
  params = state.params
  params['decoder']['conv_out'] = jax.tree.map(jnp.zeros_like,
                                               params['decoder']['conv_out'])
  state = state.replace(params=params)
  rng = np.random.default_rng(0)

  def batch(n, size):
    x = scipy.ndimage.gaussian_filter(rng.random((n, size, size, 3)), (0, 3, 3, 0))
    x = (x - x.min()) / (x.max() - x.min())
    true_scale = 0.005 + 0.1 * x.mean(-1)
    noise = rng.laplace(size=(n, size, size, 1)) * true_scale[..., None]
    return {'lq': x[:, None].astype(np.float32),
            'hr': (x + noise).astype(np.float32)}, true_scale

  state, _ = _train(config, state, (batch(8, 24)[0] for _ in range(config.num_train_steps)))
  test, true_scale = batch(8, 48)
  graphdef = state_lib.model_graphdef(config)
  restored, predicted = nnx.merge(graphdef, state.params).with_uncertainty(test['lq'])
  np.testing.assert_array_equal(restored, test['lq'][:, 0])  # the identity, untouched
  rho = scipy.stats.spearmanr(np.asarray(predicted).ravel(), true_scale.ravel()).statistic
  assert rho >= 0.8, rho
