"""ClarityNetSR (eqs. 3-6): shapes, padding, factory, gradients, precision, and
what the temporal attention is for."""

import re

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx
from scipy import ndimage

from clarity_jax.models import bicubic
from clarity_jax.models import claritynet
from clarity_jax.models import cost
from clarity_jax.models import fusion

_forward = nnx.jit(lambda model, lq: model(lq))


def _tiny(scale=2, num_neighbors=1, seed=0, **kw) -> claritynet.ClarityNetSR:
  return claritynet.create_model('tiny', scale=scale, num_neighbors=num_neighbors,
                                 rngs=nnx.Rngs(seed), **kw)


def _window(shape, seed=0) -> jax.Array:
  return jax.random.uniform(jax.random.key(seed), shape, jnp.float32)


def _residual(model, lq) -> jax.Array:
  """What the network adds to the upsampled reference frame."""
  return _forward(model, lq) - bicubic.upsample(lq[:, model.num_neighbors], model.scale)


@pytest.mark.parametrize('scale', [1, 2, 4])
@pytest.mark.parametrize('k', [0, 1, 2, 3])
def test_output_shape_and_dtype(k, scale):
  # Traced, not compiled (a compile per case would cost seconds); running
  # models are checked by the tests below.
  model = nnx.eval_shape(lambda: _tiny(scale=scale, num_neighbors=k))
  graphdef, params = nnx.split(model)
  lq = jax.ShapeDtypeStruct((2, 2 * k + 1, 8, 12, 3), jnp.float32)
  out = jax.eval_shape(lambda p, x: nnx.merge(graphdef, p)(x), params, lq)
  assert out.shape == (2, 8 * scale, 12 * scale, 3)
  assert out.dtype == jnp.float32


def test_single_frame_model_shares_encoder_and_decoder_and_has_no_flow():
  shapes = lambda m: jax.tree.map(jnp.shape, nnx.state(m, nnx.Param))
  single = nnx.eval_shape(lambda: _tiny(num_neighbors=0))
  multi = nnx.eval_shape(lambda: _tiny(num_neighbors=2))
  assert single.flow is None and multi.flow is not None
  for part in ('encoder', 'decoder'):
    assert shapes(getattr(single, part)) == shapes(getattr(multi, part))
  assert claritynet.count_params(single) < claritynet.count_params(multi)


def test_odd_sizes_are_padded_and_cropped_back():
  model = _tiny(scale=2, num_neighbors=1)
  assert model.pad_multiple == 4  # tiny's two flow levels; even without alignment
  assert _tiny(scale=2, num_neighbors=0).pad_multiple == 2
  lq = _window((1, 3, 7, 9, 3))
  out = _forward(model, lq)
  assert out.shape == (1, 14, 18, 3)
  # The output, bicubic skip included, equals the one computed on the window
  # edge-padded to the multiple, cropped: the padding is internal and leaves no trace
  # but the crop, so an exported graph fed frames padded beforehand (the ONNX engines)
  # restores the same pixels.
  padded = jnp.pad(lq, ((0, 0), (0, 0), (0, 1), (0, 3), (0, 0)), mode='edge')
  np.testing.assert_allclose(out, _forward(model, padded)[:, :14, :18], atol=1e-5)


@pytest.mark.parametrize('shape', [(1, 5, 8, 8, 3), (1, 3, 8, 8, 1),
                                   (3, 8, 8, 3), (1, 3, 0, 8, 3)])
def test_bad_windows_are_rejected(shape):
  with pytest.raises(ValueError, match=re.escape('want lq [B, 3, h, w, 3], got')):
    _tiny(num_neighbors=1)(jnp.zeros(shape))


@pytest.mark.parametrize('kwargs, message', [
    (dict(variant='huge'), "unknown variant 'huge'; choose from"),
    (dict(scale=3), 'scale must be one of (1, 2, 4), got 3'),
    (dict(num_neighbors=-1), 'num_neighbors (K) must be an int >= 0, got -1'),
    (dict(dtype='int8'), "dtype must be one of"),
])
def test_factory_rejects_bad_arguments(kwargs, message):
  args = dict(variant='tiny', scale=4, num_neighbors=2, rngs=nnx.Rngs(0)) | kwargs
  with pytest.raises(ValueError, match=re.escape(message)):
    claritynet.create_model(args.pop('variant'), **args)


def test_model_from_config_honours_every_field(load_config):
  config = load_config('runlocal')
  config.model.variant = 'tiny'  # x4, K = 2
  build = lambda: nnx.eval_shape(
      lambda: claritynet.model_from_config(config, nnx.Rngs(0)))
  model = build()
  assert (model.scale, model.num_neighbors) == (4, 2)
  assert claritynet.count_params(model) == claritynet.count_params(
      nnx.eval_shape(lambda: _tiny(scale=4, num_neighbors=2)))
  config.model.use_alignment = False
  config.model.use_attention = False
  config.model.dtype = 'bfloat16'
  config.scale, config.num_neighbors = 1, 3
  model = build()
  assert model.flow is None and isinstance(model.fusion, fusion.MeanFusion)
  assert model.dtype == jnp.bfloat16 and model.num_frames == 7
  graphdef, params = nnx.split(model)
  out = jax.eval_shape(lambda p, x: nnx.merge(graphdef, p)(x), params,
                       jax.ShapeDtypeStruct((1, 7, 8, 8, 3), jnp.float32))
  assert out.shape == (1, 8, 8, 3) and out.dtype == jnp.float32


def test_warping_features_keeps_the_parameters_and_splits_at_the_encoder():
  """warp_features: the same parameters as warping pixels (weights move between the
  two); the encoder runs per frame (encode_frames) and the rest from its features
  (restore_encoded) to the network's output; the flow still gets gradients."""
  pixels, features = _tiny(scale=2, num_neighbors=2), _tiny(scale=2, num_neighbors=2,
                                                           uncertainty=True, warp_features=True)
  same = lambda a, b: jax.tree.map(lambda x, y: x.shape == y.shape, a, b)
  assert all(jax.tree.leaves(same(nnx.state(pixels), nnx.state(features, nnx.Not(
      nnx.PathContains('uncertainty_head'))))))
  lq = _window((2, 5, 13, 18, 3))  # odd sizes: the features are padded as the window
  feats = jnp.stack([nnx.jit(lambda m, x: m.encode_frames(x))(features, window)
                     for window in lq])
  assert feats.shape == (2, 5, 16, 20, 8)
  split = nnx.jit(lambda m, x, f: m.restore_encoded(x, f, True))(features, lq, feats)
  whole = nnx.jit(lambda m, x: m.with_uncertainty(x))(features, lq)
  for a, b in zip(split, whole):
    np.testing.assert_allclose(a, b, atol=1e-5)
  grads = nnx.jit(lambda m: nnx.grad(lambda m: jnp.mean(m(lq) ** 2))(m))(features)
  assert float(sum(jnp.abs(g).sum() for g in jax.tree.leaves(nnx.state(grads.flow)))) > 0
  with pytest.raises(ValueError, match='encode_frames needs warp_features'):
    pixels.encode_frames(lq[0])
  with pytest.raises(ValueError, match=r'features \(2, 5, 16, 20, 8\) for the padded '
                     r'window \(2, 5, 8, 20, 3\)'):
    features.restore_encoded(lq[:, :, :8], feats)


def test_state_is_params_only_and_batch_independent():
  model = _tiny(scale=2, num_neighbors=1)
  graphdef, params, rest = nnx.split(model, nnx.Param, ...)
  assert not jax.tree.leaves(rest)
  assert all(x.dtype == jnp.float32 for x in jax.tree.leaves(params))
  apply = jax.jit(lambda p, x: nnx.merge(graphdef, p)(x))
  lq = _window((3, 3, 8, 8, 3))
  batched = apply(params, lq)
  for i in range(3):  # any batch size; no statistics shared across the batch
    np.testing.assert_allclose(apply(params, lq[i:i + 1])[0], batched[i],
                               atol=1e-5)


def test_gradients_reach_every_parameter_and_stay_finite():
  model = _tiny(scale=4, num_neighbors=2)
  shape = (1, 5, 12, 12, 3)
  # A random window, then constant ones (flat images: zero image gradients,
  # zero feature distances), where a careless division or sqrt would NaN.
  lq = jnp.concatenate([_window(shape)] + [jnp.full(shape, v) for v in (0, .5, 1)])
  target = _window((4, 48, 48, 3), seed=1)
  out, grads = nnx.jit(lambda m, x: (m(x), nnx.grad(
      lambda m: jnp.mean(jnp.abs(m(x) - target)))(m)))(model, lq)
  assert bool(jnp.all(jnp.isfinite(out)))
  parts = set()
  for path, g in jax.tree_util.tree_leaves_with_path(grads):
    name = jax.tree_util.keystr(path)
    parts.add(name.split("'")[1])
    assert bool(jnp.all(jnp.isfinite(g))), f'non-finite gradient for {name}'
    assert float(jnp.abs(g).max()) > 0, f'no gradient reaches {name}'
  assert parts == {'decoder', 'encoder', 'flow', 'fusion'}


def test_bfloat16_is_close_to_float32():
  f32 = _tiny(scale=4, num_neighbors=2)
  bf16 = _tiny(scale=4, num_neighbors=2, dtype='bfloat16')
  # Same float32 parameters; only the computation differs.
  for a, b in zip(jax.tree.leaves(nnx.state(f32, nnx.Param)),
                  jax.tree.leaves(nnx.state(bf16, nnx.Param))):
    assert b.dtype == jnp.float32
    np.testing.assert_array_equal(a, b)
  lq = _window((2, 5, 16, 16, 3))
  assert _forward(bf16, lq).dtype == jnp.float32
  r32, r16 = _residual(f32, lq), _residual(bf16, lq)
  rel = float(jnp.linalg.norm(r16 - r32) / jnp.linalg.norm(r32))
  print(f'bfloat16 vs float32 residual: relative L2 error {rel:.4f}')
  assert 0 < rel < 0.05  # > 0: bfloat16 really is used


def test_variants_table_matches_the_code():
  doc = claritynet.__doc__
  for name, sizes in claritynet.VARIANTS.items():
    model = nnx.eval_shape(lambda: claritynet.ClarityNetSR(
        scale=4, num_neighbors=2, rngs=nnx.Rngs(0), **sizes))
    params = claritynet.count_params(model)
    assert f'| {name} | {params:,} |' in doc, f'stale variants table: {name}'
  assert 3e6 <= params <= 8e6  # base: BasicVSR++-sized or smaller
  tiny = nnx.eval_shape(lambda: _tiny(scale=4, num_neighbors=2))
  assert 1e3 <= claritynet.count_params(tiny) <= 1e5


def test_measure_cost_counts_what_xla_runs():
  small = cost.measure_cost('tiny', h=16, w=32)
  large = cost.measure_cost('tiny', h=32, w=64)
  assert small['params'] == large['params'] == claritynet.count_params(
      _tiny(scale=4, num_neighbors=2))
  # Nearly all the work is per pixel: 4x the pixels, about 4x the FLOPs.
  assert 3.6 < large['gflops'] / small['gflops'] < 4.4
  # At least the decoder's residual-block convs, by the closed form
  # 2 * 9 * C^2 * pixels each (a lower bound of the whole network).
  c = claritynet.VARIANTS['tiny']['decoder_features']
  convs = 2 * claritynet.VARIANTS['tiny']['decoder_blocks']
  assert large['gflops'] * 1e9 > convs * 2 * 9 * c * c * 32 * 64


def _textures(rng: np.random.Generator, n: int, size: int) -> np.ndarray:
  tex = ndimage.gaussian_filter(rng.standard_normal((n, size, size, 3)),
                                (0, 0.7, 0.7, 0))
  return np.clip(0.5 + 0.2 * tex / tex.std(), 0, 1)


def _denoising_windows(rng, n, size=16, sigma=0.2, bad_prob=0.0):
  """Toy task where neighbours help: three noisy shots of one still scene.

  With bad_prob, a neighbour is replaced by a shot of another scene (a cut, an
  occlusion, a failed alignment): the case attention must learn to ignore.
  """
  clean = _textures(rng, n, size)
  lq = clean[:, None] + sigma * rng.standard_normal((n, 3, size, size, 3))
  other = _textures(rng, n, size)[:, None] + sigma * rng.standard_normal(
      (n, 3, size, size, 3))
  bad = rng.random((n, 3)) < bad_prob
  bad[:, 1] = False
  lq = np.where(bad[..., None, None, None], other, lq)
  return jnp.asarray(lq, jnp.float32), jnp.asarray(clean, jnp.float32)


def _train_denoiser(use_attention: bool, steps: int = 400):
  model = _tiny(scale=1, num_neighbors=1, use_alignment=False,
                use_attention=use_attention)
  opt = nnx.Optimizer(model, optax.adam(1e-3), wrt=nnx.Param)

  @nnx.jit
  def step(model, opt, lq, hr):
    grads = nnx.grad(lambda m: jnp.mean(jnp.abs(m(lq) - hr)))(model)
    opt.update(model, grads)

  rng = np.random.default_rng(0)
  for _ in range(steps):
    step(model, opt, *_denoising_windows(rng, 8, bad_prob=0.5))
  return model


@nnx.jit
def _window_and_single(model, lq):
  """Outputs for the whole window and for its reference alone, and the weights."""
  feats = model.encode(model.align(model.pad(lq))[0])
  fused, weights = model.fusion(feats, 1)
  single, _ = model.fusion(feats[:, 1:2], 0)
  return model.decode(fused, lq), model.decode(single, lq), weights


@pytest.fixture(scope='module')
def toy_windows():
  clean_lq, hr = _denoising_windows(np.random.default_rng(99), 8)
  noise = jax.random.uniform(jax.random.key(7), clean_lq.shape)
  noisy_lq = clean_lq.at[:, (0, 2)].set(noise[:, (0, 2)])  # neighbours: noise
  return clean_lq, noisy_lq, hr


def test_temporal_attention_uses_agreeing_and_ignores_noise_neighbours(toy_windows, psnr):
  clean_lq, noisy_lq, hr = toy_windows
  model = _train_denoiser(use_attention=True)
  out_clean, single, w_clean = _window_and_single(model, clean_lq)
  out_noise, single_noise, w_noise = _window_and_single(model, noisy_lq)
  np.testing.assert_allclose(single, single_noise, atol=1e-6)  # ref only
  ref_clean, ref_noise = float(w_clean[:, 1].mean()), float(w_noise[:, 1].mean())
  d_clean = float(jnp.mean(jnp.abs(out_clean - single)))
  d_noise = float(jnp.mean(jnp.abs(out_noise - single)))
  print(f'reference weight: clean {ref_clean:.2f}, noise {ref_noise:.2f}; '
        f'|out - single|: clean {d_clean:.4f}, noise {d_noise:.4f}; PSNR: '
        f'window {psnr(out_clean, hr):.2f}, single {psnr(single, hr):.2f}, '
        f'noise window {psnr(out_noise, hr):.2f} dB')
  # Agreeing neighbours are used, and they help.
  assert ref_clean < 0.65
  assert psnr(out_clean, hr) > psnr(single, hr) + 1.0
  # Pure-noise neighbours (never seen in training) lose their weight, and the
  # output falls back to the single-frame one instead of degrading.
  assert ref_noise > ref_clean + 0.15
  assert d_noise < 0.8 * d_clean
  assert psnr(out_noise, hr) > psnr(single, hr) - 0.3

  # Per pixel: neighbours noisy in the left half only lose weight there.
  half = clean_lq.at[:, (0, 2), :, :8].set(noisy_lq[:, (0, 2), :, :8])
  _, _, w_half = _window_and_single(model, half)
  left, right = float(w_half[:, 1, :, :4].mean()), float(w_half[:, 1, :, 12:].mean())
  assert left > right + 0.15, (left, right)


def test_mean_fusion_ablation_fails_the_same_check(toy_windows):
  # The control: fusing by a plain mean, trained the same way, cannot fall
  # back to the reference, so the check above would fail for it.
  clean_lq, noisy_lq, _ = toy_windows
  model = _train_denoiser(use_attention=False)
  out_clean, single, _ = _window_and_single(model, clean_lq)
  out_noise, _, w_noise = _window_and_single(model, noisy_lq)
  np.testing.assert_allclose(w_noise, 1 / 3, atol=1e-6)
  d_clean = float(jnp.mean(jnp.abs(out_clean - single)))
  d_noise = float(jnp.mean(jnp.abs(out_noise - single)))
  print(f'mean fusion |out - single|: clean {d_clean:.4f}, noise {d_noise:.4f}')
  assert not d_noise < 0.8 * d_clean


def test_uncertainty_head_leaves_the_restoration_and_its_weights_unchanged():
  """The head is created last (the restorer draws the same initial weights), reads
  the decoder's features through stop_gradient, and returns b > 0 per output pixel."""
  plain, with_head = _tiny(scale=2), _tiny(scale=2, uncertainty=True)
  params = nnx.to_pure_dict(nnx.state(with_head))
  head = params.pop('uncertainty_head')
  jax.tree.map(np.testing.assert_array_equal, nnx.to_pure_dict(nnx.state(plain)), params)
  lq = _window((2, 3, 12, 10, 3))
  restored, scale = nnx.jit(lambda m, x: m.with_uncertainty(x))(with_head, lq)
  np.testing.assert_array_equal(restored, _forward(plain, lq))
  assert scale.shape == (2, 24, 20) and scale.dtype == jnp.float32
  assert float(scale.min()) >= claritynet.UNCERTAINTY_FLOOR
  # It starts near UNCERTAINTY_INIT everywhere.
  np.testing.assert_allclose(scale, claritynet.UNCERTAINTY_INIT, rtol=0.5)
  # Gradients of anything computed from b reach the head only.
  graphdef, state = nnx.split(with_head)
  grads = jax.grad(lambda s: jnp.sum(nnx.merge(graphdef, s).with_uncertainty(lq)[1]))(state)
  grads = nnx.to_pure_dict(grads)
  assert all(float(jnp.abs(g).max()) > 0 for g in jax.tree.leaves(grads.pop('uncertainty_head')))
  assert all(float(jnp.abs(g).max()) == 0 for g in jax.tree.leaves(grads))
  assert sum(x.size for x in jax.tree.leaves(head)) < 0.2 * claritynet.count_params(plain)
  with pytest.raises(ValueError, match='no uncertainty head'):
    plain.with_uncertainty(lq)
