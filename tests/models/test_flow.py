"""Alignment (eq. 3): the dm-pix warp and the coarse-to-fine flow estimator."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx
from scipy import ndimage

from clarity_jax.models import flow as flow_lib


# jit: eager dispatch of the warp's many small ops costs seconds on 2 cores.
_warp = jax.jit(flow_lib.warp)


def _textures(rng: np.random.Generator, n: int, size: int) -> np.ndarray:
  """Smooth random RGB textures in about [0, 1]: gradients everywhere."""
  tex = rng.standard_normal((n, size, size, 3))
  tex = ndimage.gaussian_filter(tex, (0, 1.5, 1.5, 0))
  return 0.5 + 0.2 * tex / tex.std()


def _constant_flow(n: int, h: int, w: int, dx, dy) -> jnp.ndarray:
  d = np.stack([np.broadcast_to(dx, (n,)), np.broadcast_to(dy, (n,))], -1)
  return jnp.asarray(np.broadcast_to(d[:, None, None], (n, h, w, 2)), jnp.float32)


@pytest.mark.parametrize('dtype', [jnp.float32, jnp.bfloat16])
def test_zero_flow_is_identity(dtype):
  img = jax.random.uniform(jax.random.key(0), (2, 9, 11, 4)).astype(dtype)
  out = _warp(img, jnp.zeros((2, 9, 11, 2)))
  assert out.dtype == dtype
  np.testing.assert_array_equal(np.asarray(out, np.float32),
                                np.asarray(img, np.float32))


def test_integer_flow_is_a_shift():
  rng = np.random.default_rng(0)
  img = rng.random((2, 12, 15, 3)).astype(np.float32)
  dx, dy = np.array([2, -1]), np.array([-3, 1])
  out = np.asarray(_warp(jnp.asarray(img), _constant_flow(2, 12, 15, dx, dy)))
  m = 3  # away from the borders, where replicate padding differs from roll
  for i in range(2):
    # out[y, x] = img[y + dy, x + dx]  <=>  roll by (-dy, -dx)
    want = np.roll(img[i], (-dy[i], -dx[i]), axis=(0, 1))
    np.testing.assert_allclose(out[i, m:-m, m:-m], want[m:-m, m:-m], atol=1e-6)


def test_flow_convention_aligns_a_moved_neighbour():
  # A neighbour where the scene moved 2 px right and 1 px down is aligned by
  # the flow (+2, +1): flow[..., 0] is x, flow[..., 1] is y.
  ref = _textures(np.random.default_rng(1), 1, 20).astype(np.float32)
  nbr = np.zeros_like(ref)
  nbr[:, 1:, 2:] = ref[:, :-1, :-2]  # nbr[y, x] = ref[y - 1, x - 2]
  out = np.asarray(_warp(jnp.asarray(nbr), _constant_flow(1, 20, 20, 2, 1)))
  np.testing.assert_allclose(out[:, :-1, :-2], ref[:, :-1, :-2], atol=1e-6)


def test_bilinear_warp_matches_scipy_with_replicated_borders():
  rng = np.random.default_rng(2)
  n, h, w, c = 2, 10, 13, 3
  img = rng.random((n, h, w, c)).astype(np.float32)
  # Smooth flow up to ~5 px: many samples fall outside the image.
  flow = ndimage.gaussian_filter(rng.standard_normal((n, h, w, 2)), (0, 2, 2, 0))
  flow = (5 * flow / np.abs(flow).max()).astype(np.float32)
  out = np.asarray(_warp(jnp.asarray(img), jnp.asarray(flow)))
  rows, cols = np.mgrid[:h, :w].astype(np.float64)
  for i in range(n):
    coords = [rows + flow[i, ..., 1], cols + flow[i, ..., 0]]
    for ch in range(c):
      want = ndimage.map_coordinates(img[i, ..., ch].astype(np.float64), coords,
                                     order=1, mode='nearest')
      np.testing.assert_allclose(out[i, ..., ch], want, atol=1e-5)


def test_samples_outside_the_image_read_the_border():
  img = jax.random.uniform(jax.random.key(3), (1, 6, 7, 2))
  right = _warp(img, _constant_flow(1, 6, 7, 50.0, 0.0))
  up = _warp(img, _constant_flow(1, 6, 7, 0.0, -50.0))
  np.testing.assert_array_equal(right, jnp.broadcast_to(img[:, :, -1:], img.shape))
  np.testing.assert_array_equal(up, jnp.broadcast_to(img[:, :1], img.shape))


def test_warp_gradient_wrt_flow_is_the_image_slope():
  # On img[y, x] = 0.3 x + 0.1 y the bilinear warp is exact, so
  # d warp / d flow_x = 0.3 and d warp / d flow_y = 0.1 inside the image.
  h, w = 8, 9
  rows, cols = np.mgrid[:h, :w].astype(np.float32)
  img = jnp.asarray((0.3 * cols + 0.1 * rows)[None, ..., None])
  flow = _constant_flow(1, h, w, 0.4, -0.3)
  grad = jax.grad(lambda f: _warp(img, f)[:, 1:-1, 1:-1].sum())(flow)
  np.testing.assert_allclose(grad[0, 1:-1, 1:-1, 0], 0.3, atol=1e-5)
  np.testing.assert_allclose(grad[0, 1:-1, 1:-1, 1], 0.1, atol=1e-5)


def test_estimator_pads_sizes_off_its_pyramid_and_crops_back():
  est = flow_lib.FlowEstimator(features=4, levels=2, rngs=nnx.Rngs(0))
  assert est.multiple == 4
  run = nnx.jit(lambda e, a, b: e(a, b))
  a, b = (jax.random.uniform(jax.random.key(i), (1, 7, 10, 3)) for i in (5, 6))
  flow = run(est, a, b)
  assert flow.shape == (1, 7, 10, 2)
  pad = lambda x: jnp.pad(x, ((0, 0), (0, 1), (0, 2), (0, 0)), mode='edge')
  np.testing.assert_allclose(flow, run(est, pad(a), pad(b))[:, :7, :10],
                             atol=1e-6)


def test_pairwise_flows_layout():
  est = flow_lib.FlowEstimator(features=4, levels=2, rngs=nnx.Rngs(0))
  frames = jax.random.uniform(jax.random.key(4), (2, 3, 8, 12, 3))
  flows = nnx.jit(flow_lib.pairwise_flows, static_argnums=2)(est, frames, 1)
  assert flows.shape == (2, 3, 8, 12, 2) and flows.dtype == jnp.float32
  np.testing.assert_array_equal(flows[:, 1], 0.0)
  direct = nnx.jit(lambda e, a, b: e(a, b))
  for t in (0, 2):
    np.testing.assert_allclose(flows[:, t], direct(est, frames[:, 1], frames[:, t]),
                               atol=1e-6)
  assert float(jnp.abs(flows[:, 0]).max()) > 0  # estimated, not left at zero


def test_estimator_learns_to_recover_translations():
  """Self-supervised (photometric loss, no flow labels) on random textures and
  random translations; judged on held-out textures and translations."""
  size, reach = 32, 3
  est = flow_lib.FlowEstimator(features=16, levels=2, rngs=nnx.Rngs(0))
  opt = nnx.Optimizer(est, optax.adam(5e-3), wrt=nnx.Param)

  def pairs(rng, n):
    tex = _textures(rng, n, size + 2 * reach)
    d = rng.integers(-reach, reach + 1, size=(n, 2))  # (dx, dy) per pair
    ref = tex[:, reach:reach + size, reach:reach + size]
    # The scene moved by d in the neighbour: nbr[y, x] = ref[y - dy, x - dx].
    nbr = np.stack([t[reach - dy:reach - dy + size, reach - dx:reach - dx + size]
                    for t, (dx, dy) in zip(tex, d)])
    return (jnp.asarray(ref, jnp.float32), jnp.asarray(nbr, jnp.float32),
            jnp.asarray(d, jnp.float32))

  m = 4  # interior: warped samples there never reach past the border

  @nnx.jit
  def step(est, opt, ref, nbr):
    def loss_fn(est):
      warped = flow_lib.warp(nbr, est(ref, nbr))
      return jnp.mean(jnp.abs(warped - ref)[:, m:-m, m:-m])
    loss, grads = nnx.value_and_grad(loss_fn)(est)
    opt.update(est, grads)
    return loss

  @nnx.jit
  def estimate(est, ref, nbr):
    return est(ref, nbr)

  def endpoint_error(ref, nbr, d):
    flow = estimate(est, ref, nbr)[:, m:-m, m:-m]
    return float(jnp.mean(jnp.linalg.norm(flow - d[:, None, None], axis=-1)))

  ref, nbr, d = pairs(np.random.default_rng(123), 16)
  before = endpoint_error(ref, nbr, d)
  rng = np.random.default_rng(0)
  for _ in range(600):
    step(est, opt, *pairs(rng, 8)[:2])
  after = endpoint_error(ref, nbr, d)
  zero = float(jnp.mean(jnp.linalg.norm(d, axis=-1)))
  print(f'EPE held-out: zero flow {zero:.2f}, init {before:.2f}, trained {after:.2f} px')
  assert before > 0.8 * zero  # it starts near the identity warp
  assert after < 0.6 and after < 0.3 * zero
