"""The recurrent ClarityNetSR (models/recurrent.py): the shape of every stage, which
frames each direction's state may see, every frame on its own skip, determinism."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from clarity_jax.models import bicubic
from clarity_jax.models import claritynet
from clarity_jax.models import recurrent


def _tiny(seed=0, **kw) -> recurrent.RecurrentClarityNetSR:
  kw = dict(dict(scale=2, num_neighbors=3), **kw)
  return claritynet.create_model('tiny', propagation='recurrent', rngs=nnx.Rngs(seed), **kw)


def _clip(shape, seed=0) -> jax.Array:
  return jax.random.uniform(jax.random.key(seed), shape, jnp.float32)


@pytest.mark.parametrize('frames', [1, 2, 5])
@pytest.mark.parametrize('scale', [1, 4])
def test_every_stage_has_its_shape(frames, scale):
  model = nnx.eval_shape(lambda: _tiny(scale=scale, uncertainty=True))
  graphdef, params = nnx.split(model)
  lq = jax.ShapeDtypeStruct((2, frames, 10, 13, 3), jnp.float32)
  shape = lambda f, *args: jax.eval_shape(lambda p, *a: f(nnx.merge(graphdef, p), *a),
                                          params, *args)
  padded = shape(lambda m, x: m.pad(x), lq)
  assert padded.shape == (2, frames, 12, 16, 3)  # tiny's flow pyramid: multiples of 4
  feats = jax.ShapeDtypeStruct((2, frames, 12, 16, 8), jnp.float32)
  if frames > 1:
    to_prev, to_next = shape(lambda m, x: m.neighbour_flows(x), padded)
    assert to_prev.shape == to_next.shape == (2, frames - 1, 12, 16, 2)
  backward, forward = shape(lambda m, f, x: m.propagate(f, x), feats, padded)
  assert backward.shape == forward.shape == feats.shape
  out = shape(lambda m, x: m(x), lq)
  assert (out.shape, out.dtype) == ((2, frames, 10 * scale, 13 * scale, 3), jnp.float32)
  restored, scale_map = shape(lambda m, x: m.with_uncertainty(x), lq)
  assert restored.shape == out.shape
  assert scale_map.shape == (2, frames, 10 * scale, 13 * scale)


def test_a_wrong_clip_shape_is_refused():
  with pytest.raises(ValueError, match=r'want lq \[B, T, h, w, 3\], got \(1, 4, 8, 8, 1\)'):
    _tiny().pad(jnp.zeros((1, 4, 8, 8, 1)))


def test_forward_states_see_only_the_past_and_backward_states_only_the_future():
  """The two directions are causal each way: changing the last frame leaves every
  earlier forward state unchanged, and changing the first every later backward state;
  each change does reach the other direction's states."""
  model = _tiny(seed=3)
  propagate = nnx.jit(lambda m, x: m.propagate(
      m.encoder(x.reshape(-1, *x.shape[2:])).reshape(*x.shape[:4], -1), x))
  clip = _clip((1, 5, 16, 16, 3))
  b0, f0 = propagate(model, clip)
  b_last, f_last = propagate(model, clip.at[:, -1].set(_clip((1, 16, 16, 3), 1)))
  np.testing.assert_array_equal(f_last[:, :-1], f0[:, :-1])
  assert np.abs(f_last[:, -1] - f0[:, -1]).max() > 1e-3
  assert np.abs(b_last[:, 0] - b0[:, 0]).max() > 1e-4  # carried back to the first frame
  b_first, f_first = propagate(model, clip.at[:, 0].set(_clip((1, 16, 16, 3), 2)))
  np.testing.assert_array_equal(b_first[:, 1:], b0[:, 1:])
  assert np.abs(f_first[:, -1] - f0[:, -1]).max() > 1e-4  # carried on to the last frame


def test_every_frame_is_restored_on_its_own_upsampled_frame():
  """With the decoder's last conv zeroed the network is its global skip: frame t of
  the output is bicubic(frame t), so frames stay in order and nothing is shifted."""
  model = _tiny(scale=2)
  model.decoder.conv_out.kernel[...] = jnp.zeros_like(model.decoder.conv_out.kernel[...])
  model.decoder.conv_out.bias[...] = jnp.zeros_like(model.decoder.conv_out.bias[...])
  clip = _clip((1, 4, 12, 14, 3))
  out = nnx.jit(lambda m, x: m(x))(model, clip)
  for t in range(4):
    np.testing.assert_allclose(out[:, t], bicubic.upsample(clip[:, t], 2), atol=1e-6)


def test_same_seed_same_weights_and_the_same_output_bit_for_bit():
  clip = _clip((1, 4, 16, 16, 3))
  run = nnx.jit(lambda m, x: m(x))
  a, b = _tiny(seed=5), _tiny(seed=5)
  np.testing.assert_array_equal(run(a, clip), run(b, clip))
  np.testing.assert_array_equal(run(a, clip), run(a, clip))
  assert np.abs(run(_tiny(seed=6), clip) - run(a, clip)).max() > 1e-4


def test_without_alignment_there_is_no_flow_and_states_are_not_warped():
  model = _tiny(use_alignment=False)
  assert model.flow is None
  out = nnx.jit(lambda m, x: m(x))(model, _clip((1, 3, 8, 8, 3)))
  assert out.shape == (1, 3, 16, 16, 3) and np.isfinite(out).all()


def test_cost_per_frame_is_below_the_window_s():
  """XLA's FLOPs per output frame: each frame is encoded once, not 2K+1 times."""
  window = claritynet.measure_cost('tiny', 32, 48, scale=2)
  clip = claritynet.measure_cost('tiny', 32, 48, scale=2, propagation='recurrent', clip=6)
  assert clip['propagation'] == 'recurrent'
  assert 0.3 * window['gflops'] < clip['gflops'] < window['gflops']
