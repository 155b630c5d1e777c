"""Eq. (7) terms against NumPy closed forms; gradients; the frozen, jittable VGG term."""


from flax import nnx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from clarity_jax.train import losses
from clarity_jax.models import vgg as vgg_lib

EPS = 1e-3
LAYERS = ('block1_conv2', 'block2_conv2', 'block3_conv4')


def _pair(shape=(2, 12, 10, 3), seed=0):
  rng = np.random.default_rng(seed)
  return (rng.uniform(0, 1, shape).astype(np.float32),
          rng.uniform(0, 1, shape).astype(np.float32))


def _np_charbonnier(a, b, eps):
  d = a.astype(np.float64) - b.astype(np.float64)
  return np.mean(np.sqrt(d * d + eps * eps))


def test_laplace_nll_closed_form_minimum_and_stop_gradient():
  pred, target = _pair()
  rng = np.random.default_rng(1)
  scale = rng.uniform(0.01, 0.5, pred.shape[:-1]).astype(np.float32)
  err = np.abs(target.astype(np.float64) - pred).mean(-1)
  want = np.mean(err / scale + np.log(scale))
  assert float(losses.laplace_nll(pred, target, scale)) == pytest.approx(want, rel=1e-5)
  # Minimised where b is each pixel's mean absolute error over RGB ...
  g = jax.grad(lambda b: losses.laplace_nll(pred, target, b))(jnp.asarray(err, jnp.float32))
  np.testing.assert_allclose(g, 0.0, atol=1e-6)
  # ... and the restoration gets no gradient from it.
  g_pred = jax.grad(lambda p: losses.laplace_nll(p, target, scale))(pred)
  np.testing.assert_array_equal(g_pred, 0.0)


def test_charbonnier_closed_form():
  pred, target = _pair()
  np.testing.assert_allclose(losses.charbonnier(pred, target, EPS),
                             _np_charbonnier(pred, target, EPS), rtol=1e-6)
  # Zero error leaves exactly the eps floor; a constant error d gives sqrt(d^2+eps^2).
  np.testing.assert_allclose(losses.charbonnier(pred, pred, EPS), EPS, rtol=1e-5)
  np.testing.assert_allclose(losses.charbonnier(pred + 0.25, pred, 0.1),
                             np.sqrt(0.25**2 + 0.1**2), rtol=1e-5)


def test_edge_loss_closed_form():
  pred, target = _pair()
  dy = np.diff(pred, axis=1) - np.diff(target, axis=1)
  dx = np.diff(pred, axis=2) - np.diff(target, axis=2)
  expected = 0.5 * (np.mean(np.sqrt(dy.astype(np.float64)**2 + EPS**2))
                    + np.mean(np.sqrt(dx.astype(np.float64)**2 + EPS**2)))
  np.testing.assert_allclose(losses.edge_loss(pred, target, EPS), expected, rtol=1e-6)
  # A brightness offset changes no gradient: the edge loss stays at its floor.
  np.testing.assert_allclose(losses.edge_loss(target + 0.1, target, EPS), EPS,
                             rtol=1e-4)


def test_temporal_loss():
  hr_t, hr_next = _pair(seed=1)
  # Outputs equal to GT (or off by a static bias): no temporal error, only the floor.
  assert losses.temporal_loss(hr_t, hr_next, hr_t, hr_next, 0.0) == 0.0
  np.testing.assert_allclose(
      losses.temporal_loss(hr_t + 0.05, hr_next + 0.05, hr_t, hr_next, EPS), EPS,
      rtol=1e-4)
  # Flicker the GT does not have: closed form, growing with its amplitude.
  values = []
  for amp in (0.01, 0.05, 0.2):
    got = losses.temporal_loss(hr_t, hr_next + amp, hr_t, hr_next, EPS)
    np.testing.assert_allclose(got, np.sqrt(amp**2 + EPS**2), rtol=1e-4)
    values.append(float(got))
  assert values == sorted(values)
  out_t, out_next = _pair(seed=2)
  np.testing.assert_allclose(
      losses.temporal_loss(out_t, out_next, hr_t, hr_next, EPS),
      _np_charbonnier(out_next - out_t, hr_next - hr_t, EPS), rtol=1e-6)


def test_pixel_losses_gradients_finite_at_zero_error():
  pred, target = _pair()
  for fn in (lambda p: losses.charbonnier(p, target, EPS),
             lambda p: losses.edge_loss(p, target, EPS),
             lambda p: losses.temporal_loss(p, p * 0.5, target, target * 0.5, EPS)):
    for p in (pred, target):  # random error, and zero error (where L1 is not smooth)
      g = jax.grad(fn)(jnp.asarray(p))
      assert bool(jnp.all(jnp.isfinite(g)))
  # Closed-form gradient of the Charbonnier term.
  d = pred.astype(np.float64) - target
  np.testing.assert_allclose(
      jax.grad(lambda p: losses.charbonnier(p, target, EPS))(jnp.asarray(pred)),
      d / np.sqrt(d * d + EPS**2) / d.size, rtol=1e-4, atol=1e-9)


@pytest.fixture(scope='module')
def vgg():
  """VGG19 with random He-scaled weights: the loss's definition does not need real ones.

  Filled from NumPy into an abstract module: 20M parameters initialised by JAX
  would cost seconds on 2 cores.
  """
  model = nnx.eval_shape(lambda: vgg_lib.VGG19('torch', rngs=nnx.Rngs(0)))
  rng = np.random.default_rng(0)
  for name, cin, cout in vgg_lib.VGG19_LAYERS:
    conv = getattr(model, name)
    conv.kernel.set_value(jnp.asarray(
        rng.standard_normal((3, 3, cin, cout), np.float32) * np.sqrt(2 / (9 * cin))))
    conv.bias.set_value(jnp.asarray(rng.normal(0, 0.05, cout).astype(np.float32)))
  return model


def test_perceptual_loss_closed_form(vgg):
  pred, target = _pair((2, 32, 32, 3), seed=3)
  expected = np.mean([
      np.mean(np.abs(np.asarray(vgg(jnp.asarray(pred), (name,))[name], np.float64)
                     - np.asarray(vgg(jnp.asarray(target), (name,))[name])))
      for name in LAYERS])
  got = losses.perceptual_loss(vgg, pred, target, LAYERS)
  np.testing.assert_allclose(got, expected, rtol=1e-5)
  assert float(losses.perceptual_loss(vgg, target, target, LAYERS)) == 0.0
  assert expected > 0


def test_perceptual_loss_jitted_frozen_and_differentiable(vgg):
  pred, target = _pair((2, 32, 32, 3), seed=4)
  graphdef, state = nnx.split(vgg)

  @jax.jit
  def loss_fn(pred, state):
    return losses.perceptual_loss((graphdef, state), pred, target, LAYERS)

  eager = losses.perceptual_loss(vgg, pred, target, LAYERS)
  np.testing.assert_allclose(loss_fn(jnp.asarray(pred), state), eager, rtol=1e-5)
  g_pred, g_state = jax.jit(jax.grad(loss_fn, argnums=(0, 1)))(jnp.asarray(pred), state)
  assert bool(jnp.all(jnp.isfinite(g_pred))) and float(jnp.abs(g_pred).max()) > 0
  # The VGG is frozen: no gradient reaches its parameters.
  assert all(float(jnp.abs(leaf).max()) == 0.0 for leaf in jax.tree.leaves(g_state))
  # Gradient w.r.t. the image agrees with a central finite difference along it.
  direction = np.asarray(g_pred / jnp.linalg.norm(g_pred))
  h = 1e-2
  numeric = (loss_fn(jnp.asarray(pred + h * direction), state)
             - loss_fn(jnp.asarray(pred - h * direction), state)) / (2 * h)
  np.testing.assert_allclose(float(numeric), float(jnp.linalg.norm(g_pred)), rtol=5e-2)
