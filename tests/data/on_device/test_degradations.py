"""Eq. (1) on device (data/on_device/degradations.py) against the NumPy/OpenCV reference.

Blur, downsampling and whole windows must equal degradations.py to float
precision; noise is random, so its statistics are checked instead; JPEG is
jax_jpeg's, checked here for its wiring and against cv2 in PSNR.
"""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from clarity_jax.data import degradations as D
from clarity_jax.data.on_device import degradations as J
from clarity_jax.data.on_device import jpeg as jax_jpeg
from clarity_jax.data import kernels as K

# One jitted function for every test: same shapes, one compilation.
_DEGRADE = jax.jit(J.degrade, static_argnums=3)


def _stack(windows: list[dict]) -> dict[str, np.ndarray]:
  return {k: np.stack([w[k] for w in windows]) for k in windows[0]}


def _windows(photo: np.ndarray, b: int, t: int, h: int, w: int) -> np.ndarray:
  """[b, t, h, w, 3] crops of a real photograph, moving a little from frame to frame."""
  return np.stack([np.stack([photo[60 * i + 2 * f:60 * i + 2 * f + h,
                                   40 + 50 * i + 3 * f:40 + 50 * i + 3 * f + w]
                             for f in range(t)]) for i in range(b)])


def _pad_kernel(k: np.ndarray, size: int) -> np.ndarray:
  p = (size - k.shape[0]) // 2
  return np.pad(k, p)


# ---------------------------------------------------------------------- host side


def test_kernel_size_holds_every_kernel_the_default_config_draws(degradation_cfg):
  cfg = degradation_cfg(blur_prob=1.0, second_round_prob=1.0)
  rng = np.random.default_rng(0)
  for _ in range(150):
    J.window_arrays(D.sample_window_params(rng, cfg, 3, 4), kernel_size=J.KERNEL_SIZE)
  # The bound is tight: a straight, accelerating motion of the longest length needs it.
  worst = K.motion_kernel(cfg.motion_length_range[1], 0.0, accel=max(K.MOTION_ACCEL_RANGE))
  assert worst.shape[0] == J.KERNEL_SIZE
  assert J.max_kernel_size(degradation_cfg(blur_prob=0.0)) == 1
  sized = degradation_cfg(kernel_types=('gaussian_iso', 'sinc'), kernel_probs=(0.5, 0.5),
               kernel_size_range=(7, 20))
  assert J.max_kernel_size(sized) == 19


def test_window_arrays_have_fixed_shapes_and_the_window_values(degradation_cfg):
  cfg = degradation_cfg(blur_prob=1.0, noise_prob=1.0, jpeg_prob=1.0, second_round_prob=1.0)
  rng = np.random.default_rng(3)
  params = [D.sample_window_params(rng, cfg, 5, 4) for _ in range(6)]
  plain = degradation_cfg(blur_prob=0.0, noise_prob=0.0, jpeg_prob=0.0)
  params.append(D.sample_window_params(rng, plain, 5, 4))
  size = J.KERNEL_SIZE
  arrays = [J.window_arrays(p, kernel_size=size) for p in params]
  for a in arrays:  # same keys, shapes and dtypes for every window: batches stack
    assert {k: (v.shape, v.dtype) for k, v in a.items()} == {
        k: (v.shape, v.dtype) for k, v in arrays[0].items()}
  assert arrays[0]['blur_kernel'].shape == (5, size, size)
  assert arrays[0]['second_blur_kernel'].shape == (5, size, size)
  for p, a in zip(params, arrays):
    rounds = [('', p)] + ([('second_', p['second_round'])] if p['second_round'] else [])
    for prefix, r in rounds:
      for t in range(5):
        k = D.frame_kernel(r['blur'], t) if r['blur'] else np.ones((1, 1), np.float32)
        np.testing.assert_array_equal(a[prefix + 'blur_kernel'][t], _pad_kernel(k, size))
      noise = r['noise']
      if noise is None:
        assert a[prefix + 'noise_kind'] == 0 and not a[prefix + 'noise_level'].any()
      else:
        assert a[prefix + 'noise_kind'] == (2 if noise['type'] == 'poisson' else 1)
        assert a[prefix + 'noise_gray'] == float(noise['gray'])
        expected = [f['scale'] if noise['type'] == 'poisson' else f['sigma255'] / 255
                    for f in noise['frames']]
        np.testing.assert_allclose(a[prefix + 'noise_level'], expected, rtol=1e-6)
      quality = [f['quality'] for f in r['jpeg']['frames']] if r['jpeg'] else [0] * 5
      np.testing.assert_array_equal(a[prefix + 'jpeg_quality'], quality)
    assert D.RESIZE_MODES[int(a['resize'])] == p['resize']
    assert a['second_round'] == float(p['second_round'] is not None)
  off = arrays[-1]  # nothing on: delta kernels, no noise, no JPEG, no second round
  assert off['second_round'] == 0 and off['noise_kind'] == 0 and not off['jpeg_quality'].any()
  assert off['blur_kernel'].sum() == 5 and off['blur_kernel'][:, size // 2, size // 2].all()
  with pytest.raises(ValueError, match='larger than kernel_size 3'):
    J.window_arrays(params[0], kernel_size=3)
  with pytest.raises(ValueError, match='odd and positive'):
    J.window_arrays(params[0], kernel_size=30)


# --------------------------------------------------------------------------- ops


@pytest.mark.parametrize('method', ['fft', 'conv'])
@pytest.mark.parametrize('size', [(24, 20), (7, 9)])
def test_blur_matches_opencv_for_every_kernel_family(photo, method, size, degradation_cfg):
  """Every family, kernels padded to KERNEL_SIZE; (7, 9): the border reflects twice."""
  h, w = size
  rng = np.random.default_rng(h)
  ks = [K.make_kernel(K.sample_kernel_params(rng, degradation_cfg(), t)) for t in K.KERNEL_TYPES]
  ks.append(K.motion_kernel(6.0, 0.5, curvature=1.5, accel=0.5))  # asymmetric, for the impulse
  imgs = [photo[30 * i:30 * i + h, 100 + 7 * i:100 + 7 * i + w] for i in range(len(ks) - 1)]
  impulse = np.zeros((h, w, 3), np.float32)
  impulse[h // 2, w // 2] = 1.0
  imgs.append(impulse)
  kernel = np.stack([_pad_kernel(k, J.KERNEL_SIZE) for k in ks])
  out = np.asarray(jax.jit(J.blur, static_argnums=2)(np.stack(imgs), kernel, method))
  ref = np.stack([D.blur(img, k) for img, k in zip(imgs, ks)])
  np.testing.assert_allclose(out, ref, atol=1e-5)
  if h > ks[-1].shape[0]:  # a true convolution: the impulse response is the kernel itself
    r = ks[-1].shape[0] // 2
    np.testing.assert_allclose(out[-1, h // 2 - r:h // 2 + r + 1, w // 2 - r:w // 2 + r + 1, 0],
                               ks[-1], atol=1e-6)


@pytest.mark.parametrize('scale', [2, 4])
def test_downsample_matches_the_reference_in_every_mode(photo, scale):
  """Odd multiples of s (odd LQ sizes), all modes in one batch, one mode per frame."""
  h, w = 7 * scale, 9 * scale
  imgs = np.stack([photo[200 + 13 * i:200 + 13 * i + h, 150:150 + w]
                   for i in range(len(D.RESIZE_MODES))])
  resize = np.arange(len(D.RESIZE_MODES), dtype=np.int32)
  out = np.asarray(jax.jit(J.downsample, static_argnums=2)(imgs, resize, scale))
  assert out.shape == (3, 7, 9, 3)
  for img, o, mode in zip(imgs, out, D.RESIZE_MODES):
    np.testing.assert_allclose(o, D.downsample(img, scale, mode), atol=1e-5, err_msg=mode)
  box = imgs[1].reshape(7, scale, 9, scale, 3).mean(axis=(1, 3))
  np.testing.assert_allclose(out[D.RESIZE_MODES.index('area')], box, atol=1e-6)


# ------------------------------------------------------------------------ noise

_LEVELS = np.array([0.1, 0.3, 0.5, 0.7], np.float32)


def _noise_batch() -> tuple[np.ndarray, dict[str, np.ndarray]]:
  """Six windows of 4 constant 64x64 frames at scale 1, only noise on (delta blur, no JPEG).

  0 gaussian colour, 1 gaussian gray, 2 poisson colour, 3 poisson gray (on
  coloured frames), 4 none, 5 as 0 (another key).
  """
  b, t, size = 6, 4, J.KERNEL_SIZE
  hr = np.broadcast_to(_LEVELS[None, :, None, None, None], (b, t, 64, 64, 3)).copy()
  hr[3] = (np.array([0.3, 0.5, 0.7], np.float32) + (_LEVELS[:, None] - 0.4) / 4)[:, None, None]
  delta = np.zeros((b, t, size, size), np.float32)
  delta[:, :, size // 2, size // 2] = 1.0
  sigma = np.array([5.0, 10.0, 20.0, 30.0], np.float32) / 255
  arrays = {'blur_kernel': delta, 'resize': np.ones(b, np.int32),
            'noise_kind': np.array([1, 1, 2, 2, 0, 1], np.int32),
            'noise_gray': np.array([0, 1, 0, 1, 0, 0], np.float32),
            'noise_level': np.stack([sigma, sigma, [1, 1, 0.5, 0.5], [1, 1, 0.5, 0.5],
                                     sigma, sigma]).astype(np.float32),
            'jpeg_quality': np.zeros((b, t), np.int32)}
  arrays.update({'second_' + k: v for k, v in arrays.items() if k != 'resize'})
  arrays['second_noise_kind'] = np.zeros(b, np.int32)
  arrays['second_round'] = np.zeros(b, np.float32)
  return hr, arrays


def test_noise_has_the_reference_statistics():
  hr, arrays = _noise_batch()
  keys = J.example_keys(0, np.arange(6))
  out = np.asarray(_DEGRADE(hr, arrays, keys, 1))
  n = out - hr
  for b in (0, 1, 5):  # gaussian: N(0, sigma^2), frame by frame
    for t, sigma in enumerate(arrays['noise_level'][b]):
      draws = n[b, t, ..., 0] if b == 1 else n[b, t]  # gray: one draw for R, G, B
      assert abs(draws.mean()) < 4 * sigma / math.sqrt(draws.size)
      assert draws.std() == pytest.approx(sigma, rel=0.04)
  colour = n[0, 3].reshape(-1, 3)
  assert abs(np.corrcoef(colour[:, 0], colour[:, 1])[0, 1]) < 0.05  # channels independent
  for b in (1, 3):  # gray: one value for R, G, B
    np.testing.assert_allclose(n[b, ..., 0], n[b, ..., 2], atol=1e-6)
  for b in (2, 3):  # poisson: counts / P, variance scale^2 x / P
    for t, scale in enumerate(arrays['noise_level'][b]):
      x = hr[b, t, 0, 0] @ D._LUMA if b == 3 else _LEVELS[t]  # pylint: disable=protected-access
      shot = n[b, t] if b == 2 else n[b, t, ..., 0]  # gray: one draw for R, G, B
      k = (shot / scale + x) * D.POISSON_PEAK  # the drawn photon counts
      np.testing.assert_allclose(k, np.round(k), atol=2e-3)
      expected = scale**2 * x / D.POISSON_PEAK
      assert abs(shot.mean()) < 4 * math.sqrt(expected / shot.size)
      assert shot.var() == pytest.approx(expected, rel=0.05 if b == 2 else 0.08)
  np.testing.assert_allclose(out[4], hr[4], atol=1e-6)  # noise_kind 0: no noise (FFT blur)
  assert not np.allclose(n[0], n[5], atol=1e-3)  # other key, other noise
  np.testing.assert_array_equal(np.asarray(_DEGRADE(hr, arrays, keys, 1)), out)  # same key
  other = np.asarray(_DEGRADE(hr, arrays, J.example_keys(1, np.arange(6)), 1))
  assert not np.allclose(other[:4], out[:4], atol=1e-3)  # other seed, other noise


def test_an_examples_noise_depends_on_seed_and_index_only():
  hr, arrays = _noise_batch()
  keys = J.example_keys(7, np.arange(10, 16))
  alone = J.example_keys(7, np.array([12]))
  np.testing.assert_array_equal(jax.random.key_data(alone[0]), jax.random.key_data(keys[2]))
  np.testing.assert_array_equal(jax.random.key_data(keys[2]),
                                jax.random.key_data(jax.random.fold_in(jax.random.key(7), 12)))
  full = np.asarray(_DEGRADE(hr, arrays, keys, 1))
  one = np.asarray(_DEGRADE(hr[2:3], {k: v[2:3] for k, v in arrays.items()}, alone, 1))
  np.testing.assert_allclose(one[0], full[2], atol=1e-6)  # as if degraded on another device


# ---------------------------------------------------------------- whole windows


def _draw(rng: np.random.Generator, cfg, scale: int, want) -> dict:
  while True:
    params = D.sample_window_params(rng, cfg, 5, scale)
    if want(params):
      return params


def _reference_batch(photo: np.ndarray, scale: int, degradation_cfg, overrides: dict
                     ) -> tuple[np.ndarray, list[dict]]:
  """4 windows of 5 frames 32x32: one per resize mode, blurred (the last with a second
  round, blur at LQ resolution), plus one without blur; drawn by sample_window_params
  from degradation_cfg(**overrides)."""
  rng = np.random.default_rng(scale)
  params = []
  for mode in D.RESIZE_MODES:
    second = mode == D.RESIZE_MODES[-1]
    c = degradation_cfg(**{**overrides, 'second_round_prob': 1.0 if second else 0.0})
    params.append(_draw(rng, c, scale, lambda p, m=mode, s=second: p['resize'] == m
                        and p['blur'] is not None
                        and (not s or p['second_round']['blur'] is not None)))
  params.append(_draw(rng, degradation_cfg(**overrides), scale, lambda p: p['blur'] is None))
  return _windows(photo, len(params), 5, 32, 32), params


def _run(hr: np.ndarray, params: list[dict], scale: int) -> np.ndarray:
  arrays = _stack([J.window_arrays(p, kernel_size=J.KERNEL_SIZE) for p in params])
  return np.asarray(_DEGRADE(hr, arrays, J.example_keys(0, np.arange(len(params))), scale))


_QUIET = {'noise_prob': 0.0, 'jpeg_prob': 0.0, 'video_codec_prob': 0.0}


@pytest.mark.parametrize('scale', [4, 2])
def test_degrade_equals_apply_window_without_noise_and_codecs(photo, scale, degradation_cfg):
  hr, params = _reference_batch(photo, scale, degradation_cfg, _QUIET)
  out = _run(hr, params, scale)
  ref = np.stack([D.apply_window(x, p, scale, np.random.default_rng(0))
                  for x, p in zip(hr, params)])
  assert out.shape == (4, 5, 32 // scale, 32 // scale, 3) and out.dtype == np.float32
  np.testing.assert_allclose(out, ref, atol=1e-5)


def test_jpeg_is_jax_jpeg_per_frame_and_close_to_opencv(photo, degradation_cfg):
  """JPEG after the first round's noise, per frame at its quality; 0 leaves a frame alone."""
  hr, params = _reference_batch(photo, 2, degradation_cfg, {**_QUIET, 'jpeg_prob': 1.0})
  params[1]['jpeg'] = None  # JPEG off in one window
  out = _run(hr, params, 2)
  before = _run(hr, [dict(p, jpeg=None) for p in params], 2)
  first_only = [0, 3]  # JPEG on, no second round: compose by hand
  quality = np.stack([[f['quality'] for f in params[i]['jpeg']['frames']] for i in first_only])
  composed = np.asarray(jax.jit(jax_jpeg.jpeg)(before[first_only], quality))
  np.testing.assert_array_equal(out[first_only], composed)
  assert not np.allclose(out[0], before[0], atol=1e-3)  # JPEG did something
  ref = np.stack([D.apply_window(x, p, 2, np.random.default_rng(0)) for x, p in zip(hr, params)])
  np.testing.assert_allclose(out[1], ref[1], atol=1e-5)  # quality 0: no JPEG at all
  psnr = -10 * np.log10(np.mean((out - ref)**2))  # against cv2's libjpeg, both rounds
  assert psnr > 40, psnr


def test_degrade_rejects_bad_inputs():
  _, arrays = _noise_batch()
  keys = J.example_keys(0, np.arange(6))
  with pytest.raises(ValueError, match='not a multiple of scale 4'):
    J.degrade(jnp.zeros((6, 4, 30, 32, 3)), arrays, keys, 4)
  with pytest.raises(ValueError, match=r'\[B, T, H, W, 3\]'):
    J.degrade(jnp.zeros((6, 4, 32, 32)), arrays, keys, 4)
  with pytest.raises(ValueError, match='lack'):
    J.degrade(jnp.zeros((6, 4, 32, 32, 3)), {'resize': arrays['resize']}, keys, 4)
  with pytest.raises(ValueError, match='blur_kernel must be'):
    J.degrade(jnp.zeros((6, 5, 32, 32, 3)), arrays, keys, 4)
  with pytest.raises(ValueError, match='one per window'):
    J.degrade(jnp.zeros((6, 4, 32, 32, 3)), arrays, keys[:3], 4)
