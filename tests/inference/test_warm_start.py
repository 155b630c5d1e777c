"""Warm start (config.init_from): a bundle's or a workdir's weights at step 0, one-line
errors on a mismatch, and an exact resume of a warm-started run."""

import shutil

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from clarity_jax import errors
from clarity_jax import sharding
from clarity_jax.inference import bundle
from clarity_jax.inference import warm_start
from clarity_jax.train import checkpoints
from clarity_jax.train import loop
from clarity_jax.train import state as state_lib


@pytest.fixture(scope='module')
def source(tmp_path_factory, random_params):
  """A tiny x4 K=1 bundle (the tests' tiny config) with random weights."""
  spec = bundle.ModelSpec('tiny', scale=4, num_neighbors=1, warp_features=True)
  graphdef, params = random_params(spec, seed=5)
  path = tmp_path_factory.mktemp('warm') / 'bundle'
  bundle.save_bundle(path, spec, params, step=123)
  return path, graphdef, params


def _state_at_step_0(config, workdir):
  ckpt = checkpoints.Checkpointer(str(workdir), config)
  try:
    return loop._restore_or_init(config, ckpt, sharding.make_mesh(1),  # pylint: disable=protected-access
                                 lambda: warm_start.load(config))
  finally:
    ckpt.close()


def test_step_0_gives_the_bundles_output(source, tiny_config, photo_windows, tmp_path):
  path, graphdef, params = source
  config = tiny_config(init_from=str(path), ema_decay=0.999)
  state, step = _state_at_step_0(config, tmp_path)
  assert step == 0 and int(state.step) == 0
  window = jnp.asarray(photo_windows(1, 24, 32))
  forward = jax.jit(lambda g, p, x: nnx.merge(g, p)(x), static_argnums=0)
  want = forward(graphdef, params, window)
  got = forward(state_lib.model_graphdef(config), state.params, window)
  np.testing.assert_allclose(np.asarray(got), np.asarray(want), atol=1e-5)
  # The EMA starts from the same weights; the optimiser starts fresh.
  for a, b in zip(jax.tree.leaves(state.ema_params), jax.tree.leaves(params)):
    np.testing.assert_array_equal(np.asarray(a), b)
  # ... in buffers of its own: the train step donates both, and one buffer donated
  # twice stops the first step.
  for a, b in zip(jax.tree.leaves(state.ema_params), jax.tree.leaves(state.params)):
    assert a.unsafe_buffer_pointer() != b.unsafe_buffer_pointer()
  assert all(not np.any(np.asarray(x)) for x in jax.tree.leaves(state.opt_state)
             if np.asarray(x).dtype == np.float32)


@pytest.mark.parametrize('field,value,says', [
    ('model__variant', 'small', 'holds a tiny x4 K=1 model; the config trains small x4 K=1'),
    ('scale', 2, 'holds a tiny x4 K=1 model; the config trains tiny x2 K=1'),
    ('num_neighbors', 2, 'the config trains tiny x4 K=2'),
    ('model__use_attention', False, 'the config trains tiny x4 K=1 no attention'),
])
def test_a_mismatch_is_one_line_naming_the_bundle(source, tiny_config, field, value, says):
  path = source[0]
  with pytest.raises(errors.ConfigError) as e:
    warm_start.load(tiny_config(init_from=str(path), **{field: value}))
  assert str(e.value).startswith(f'{path}: config.init_from ') and says in str(e.value)
  assert '\n' not in str(e.value)


def test_neither_bundle_nor_workdir(tiny_config, tmp_path):
  with pytest.raises(errors.PathError, match='no such bundle or workdir'):
    warm_start.load(tiny_config(init_from=str(tmp_path / 'missing')))
  (tmp_path / 'empty').mkdir()
  with pytest.raises(errors.PathError, match='neither a bundle'):
    warm_start.load(tiny_config(init_from=str(tmp_path / 'empty')))


def test_a_resumed_warm_started_run_is_exact(source, tiny_config, final_params, tmp_path):
  """Straight to step 4, then again from its step-2 checkpoint: the same weights;
  and a workdir serves as init_from as well as a bundle does. With an EMA copy."""
  config = tiny_config(init_from=str(source[0]), eval_every_steps=1000, ema_decay=0.999)
  loop.train_and_evaluate(config, str(tmp_path))
  step, straight = final_params(tmp_path)
  assert step == 4
  shutil.rmtree(tmp_path / 'checkpoints' / '4')  # as if killed before step 4 was saved
  loop.train_and_evaluate(config, str(tmp_path))
  step, resumed = final_params(tmp_path)
  assert step == 4
  for a, b in zip(jax.tree.leaves(straight), jax.tree.leaves(resumed)):
    np.testing.assert_allclose(np.asarray(a), np.asarray(b), atol=1e-6)
  # Warm-started from a workdir: that run's evaluation weights at step 0.
  params, what = warm_start.load(tiny_config(init_from=str(tmp_path)))
  assert 'step 4' in what
  want, _, _, _ = checkpoints.restore_params(tmp_path)
  for a, b in zip(jax.tree.leaves(params), jax.tree.leaves(want)):
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_a_restorer_without_a_head_gets_a_fresh_one(source, tiny_config, tmp_path):
  """Adding the uncertainty head to a trained model: the restorer's weights as the
  bundle has them, the head from the run's own initialisation; and back again,
  a bundle with a head warm-starts a model without one."""
  path, _, params = source
  config = tiny_config(init_from=str(path), model__uncertainty=True, freeze_restorer=True)
  state, _ = _state_at_step_0(config, tmp_path / 'a')
  head = state.params.pop(state_lib.UNCERTAINTY_KEY)
  jax.tree.map(np.testing.assert_array_equal, state.params, params)
  fresh = state_lib.init_state(config).params[state_lib.UNCERTAINTY_KEY]
  jax.tree.map(np.testing.assert_array_equal, head, fresh)
  assert 'a new uncertainty head' in warm_start.load(config)[1]

  with_head = tmp_path / 'with_head'
  spec = bundle.ModelSpec('tiny', scale=4, num_neighbors=1, uncertainty=True,
                          warp_features=True)
  bundle.save_bundle(with_head, spec, {**params, state_lib.UNCERTAINTY_KEY: head}, step=7)
  loaded, note = warm_start.load(tiny_config(init_from=str(with_head)))
  assert 'uncertainty head left out' in note
  jax.tree.map(np.testing.assert_array_equal, loaded, params)


def test_the_warps_place_may_change(source, tiny_config):
  """The warp's place does not change the parameters: a bundle that warps encoder
  features starts a run that warps frames with every weight as it was (and back)."""
  path, _, params = source
  loaded, note = warm_start.load(tiny_config(init_from=str(path), model__warp_features=False))
  assert note.endswith('now warping pixels)')
  jax.tree.map(np.testing.assert_array_equal, loaded, params)
