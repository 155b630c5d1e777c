"""Degradation ops and windows: PIL, closed forms, noise statistics, coherence, determinism.

Compression (JPEG, the video codec) is tested in test_codecs.py."""

import json
import math

import numpy as np
from PIL import Image
import pytest

from clarity_jax.data import degradations as D
from clarity_jax.data import kernels as K


def _ramp_at(yy: np.ndarray, xx: np.ndarray) -> np.ndarray:
  """A linear image a x + b y + c per channel, at (fractional) pixel coordinates."""
  return np.stack([0.002 * xx + 0.001 * yy + 0.2, 0.3 - 0.001 * xx + 0.0015 * yy,
                   0.5 + 0.0005 * (xx + yy)], axis=-1).astype(np.float32)


def _ramp(h: int, w: int) -> np.ndarray:
  return _ramp_at(*np.mgrid[:h, :w].astype(np.float64))


def _ramp_at_lq_centres(h: int, w: int, scale: int) -> np.ndarray:
  """The ramp where LQ pixel (i, j) is centred in HR coordinates: (i + 1/2) s - 1/2."""
  return _ramp_at(*np.meshgrid((np.arange(h) + 0.5) * scale - 0.5,
                               (np.arange(w) + 0.5) * scale - 0.5, indexing='ij'))


# ------------------------------------------------------------------------- ops


@pytest.mark.parametrize('kernel_type', K.KERNEL_TYPES)
def test_blurring_a_constant_image_leaves_it_constant(kernel_type, degradation_cfg):
  cfg = degradation_cfg()
  k = K.make_kernel(K.sample_kernel_params(np.random.default_rng(1), cfg, kernel_type))
  img = np.full((40, 52, 3), [0.2, 0.5, 0.9], np.float32)
  np.testing.assert_allclose(D.blur(img, k), img, atol=1e-5)


def test_blur_is_a_convolution_with_the_kernel():
  """The impulse response is the kernel itself (not its mirror image)."""
  k = K.motion_kernel(9.0, 0.5, curvature=1.5, accel=0.5)
  img = np.zeros((41, 41, 3), np.float32)
  img[20, 20] = 1.0
  r = k.shape[0] // 2
  np.testing.assert_allclose(D.blur(img, k)[20 - r:21 + r, 20 - r:21 + r, 1], k, atol=1e-6)


@pytest.mark.parametrize('scale', [2, 4])
@pytest.mark.parametrize('mode', D.RESIZE_MODES)
def test_downsampling_matches_pil(photo, scale, mode):
  """Stated tolerance: < 1e-5 away from the border (2 s HR pixels); < 0.1 overall.

  PIL renormalises the filter where it leaves the image, we reflect the image, so
  only the outermost LQ pixels differ; `area` is exact everywhere.
  """
  pil_filter = {'bicubic': Image.BICUBIC, 'bilinear': Image.BILINEAR, 'area': Image.BOX}[mode]
  img = photo[100:100 + 48 * scale // 2, 50:50 + 40 * scale // 2]
  h, w = img.shape[0] // scale, img.shape[1] // scale
  out = D.downsample(img, scale, mode)
  ref = np.stack([np.asarray(Image.fromarray(img[..., c], 'F').resize((w, h), pil_filter))
                  for c in range(3)], axis=-1)
  assert out.shape == (h, w, 3) and out.dtype == np.float32
  np.testing.assert_allclose(out[2:-2, 2:-2], ref[2:-2, 2:-2], atol=1e-5)
  np.testing.assert_allclose(out, ref, atol=1e-5 if mode == 'area' else 0.1)
  if mode == 'area':
    box = img.reshape(h, scale, w, scale, 3).mean(axis=(1, 3))
    np.testing.assert_allclose(out, box, atol=1e-6)


@pytest.mark.parametrize('scale', [2, 4])
@pytest.mark.parametrize('mode', D.RESIZE_MODES)
def test_downsampling_is_pixel_centre_aligned(scale, mode):
  """On a linear ramp, LQ pixel i takes the HR value at (i + 1/2) s - 1/2."""
  hr = _ramp(24 * scale, 20 * scale)
  lq = D.downsample(hr, scale, mode)
  expected = _ramp_at_lq_centres(24, 20, scale)
  np.testing.assert_allclose(lq[2:-2, 2:-2], expected[2:-2, 2:-2], atol=2e-6)


def test_downsampling_rejects_sizes_not_multiple_of_scale():
  with pytest.raises(ValueError, match='multiples'):
    D.downsample(np.zeros((10, 12, 3), np.float32), 4, 'bicubic')


def test_gaussian_noise_has_the_requested_statistics():
  img = np.full((256, 256, 3), 0.5, np.float32)
  sigma = 12 / 255
  noisy = D.gaussian_noise(img, sigma, np.random.default_rng(0))
  n = noisy - img
  se = sigma / math.sqrt(n.size)
  assert abs(n.mean()) < 4 * se
  assert n.std() == pytest.approx(sigma, rel=0.01)
  corr = np.corrcoef(n[..., 0].ravel(), n[..., 1].ravel())[0, 1]
  assert abs(corr) < 0.02  # colour noise: channels independent
  gray = D.gaussian_noise(img, sigma, np.random.default_rng(0), gray=True) - img
  np.testing.assert_array_equal(gray[..., 0], gray[..., 1])
  np.testing.assert_array_equal(gray[..., 0], gray[..., 2])
  assert gray.std() == pytest.approx(sigma, rel=0.01)


def test_poisson_noise_variance_follows_intensity():
  """Var = scale^2 x / P: shot noise grows with brightness."""
  for level in (0.2, 0.6):
    for scale in (0.5, 2.0):
      img = np.full((256, 256, 3), level, np.float32)
      n = D.poisson_noise(img, scale, np.random.default_rng(1)) - img
      expected = scale**2 * level / D.POISSON_PEAK
      assert abs(n.mean()) < 4 * math.sqrt(expected / n.size)
      assert n.var() == pytest.approx(expected, rel=0.03)
  img = np.full((128, 128, 3), [0.2, 0.5, 0.8], np.float32)
  gray = D.poisson_noise(img, 1.0, np.random.default_rng(2), gray=True) - img
  np.testing.assert_allclose(gray[..., 0], gray[..., 2], atol=1e-6)  # luma noise on all
  luma = 0.299 * 0.2 + 0.587 * 0.5 + 0.114 * 0.8
  assert gray[..., 0].var() == pytest.approx(luma / D.POISSON_PEAK, rel=0.05)


# ------------------------------------------------------------------- windows


def _continuous_fields(params: dict, cfg):
  """(path, range, values over frames) for every drifting parameter of a window, the
  ranges those of `cfg`."""
  rounds = [('', params)]
  if params['second_round']:
    rounds.append(('second_round.', params['second_round']))
  for prefix, p in rounds:
    if p['blur']:
      shrink = 0.5 if prefix else 1.0
      for name, r in K.kernel_param_ranges(p['blur']['type'], cfg, shrink).items():
        yield prefix + 'blur.' + name, r, [f[name] for f in p['blur']['frames']]
    if p['noise']:
      name, r = (('scale', cfg.poisson_scale_range) if p['noise']['type'] == 'poisson' else
                 ('sigma255', cfg.gaussian_sigma255_range))
      yield prefix + 'noise', K.Range(*r), [f[name] for f in p['noise']['frames']]
    if p['jpeg']:
      yield (prefix + 'jpeg', K.Range(*cfg.jpeg_quality_range, integer=True),
             [f['quality'] for f in p['jpeg']['frames']])


def test_window_parameters_drift_smoothly_within_their_ranges(degradation_cfg):
  cfg = degradation_cfg(blur_prob=1.0, noise_prob=1.0, jpeg_prob=1.0, second_round_prob=0.5,
             video_codec_prob=0.5)
  rng = np.random.default_rng(0)
  moved, windows = set(), []
  for _ in range(200):
    params = D.sample_window_params(rng, cfg, 7, 4)
    windows.append(params)
    assert json.loads(json.dumps(params)) == params  # JSON-serialisable as is
    for name, r, raw in _continuous_fields(params, degradation_cfg()):
      if r.integer:
        assert all(isinstance(v, int) for v in raw), (name, raw)
      values = np.asarray(raw, np.float64)
      assert np.all((values >= r.low) & (values <= r.high)), name
      step = np.abs(np.diff(values))
      if r.periodic:
        step = np.minimum(step, (r.high - r.low) - step)
      bound = math.floor(cfg.drift * (r.high - r.low)) if r.integer else cfg.drift * (
          r.high - r.low)
      assert np.all(step <= bound + 1e-9), (name, values)
      if step.max() > 0:
        moved.add(name.split('.')[-1])
  assert {'length', 'angle', 'curvature', 'sigma_x', 'theta', 'radius', 'cutoff', 'beta',
          'noise', 'jpeg'} <= moved  # they drift, they are not frozen
  kinds = {w['blur']['type'] for w in windows}
  assert kinds == set(K.KERNEL_TYPES)
  crfs = [w['video']['crf'] for w in windows if w['video']]
  assert min(crfs) >= cfg.video_crf_range[0] and max(crfs) <= cfg.video_crf_range[1]
  assert windows[0] != windows[1]  # two windows differ
  again = D.sample_window_params(np.random.default_rng(0), cfg, 7, 4)
  assert again == windows[0]  # same seed, same parameters


def test_probabilities_switch_stages(photo, degradation_cfg):
  off = degradation_cfg(blur_prob=0.0, noise_prob=0.0, jpeg_prob=0.0, video_codec_prob=0.0)
  params = D.sample_window_params(np.random.default_rng(0), off, 3, 2)
  assert (params['blur'], params['noise'], params['jpeg'], params['second_round'],
          params['video']) == (None, None, None, None, None)
  hr = np.stack([photo[:64, :64]] * 3)
  lq = D.apply_window(hr, params, 2, np.random.default_rng(0))
  np.testing.assert_allclose(lq[0], np.clip(D.downsample(hr[0], 2, params['resize']), 0, 1))


def test_apply_window_shapes_and_determinism(photo, degradation_cfg):
  cfg = degradation_cfg(video_codec_prob=1.0, second_round_prob=1.0, noise_prob=1.0)
  hr = np.stack([photo[i:i + 64, 2 * i:2 * i + 96] for i in range(5)])
  lq1, p1 = D.degrade_window(hr, np.random.default_rng(7), cfg, 4)
  lq2, p2 = D.degrade_window(hr, np.random.default_rng(7), cfg, 4)
  lq3, _ = D.degrade_window(hr, np.random.default_rng(8), cfg, 4)
  assert lq1.shape == (5, 16, 24, 3) and lq1.dtype == np.float32
  assert lq1.min() >= 0.0 and lq1.max() <= 1.0
  np.testing.assert_array_equal(lq1, lq2)
  assert p1 == p2 and not np.array_equal(lq1, lq3)
  # The parameters (e.g. from a JSON sidecar) plus the noise stream rebuild the output.
  rng = np.random.default_rng(7)
  D.sample_window_params(rng, cfg, 5, 4)
  replay = D.apply_window(hr, json.loads(json.dumps(p1)), 4, rng)
  np.testing.assert_array_equal(replay, lq1)
  single, _ = D.degrade_window(hr[:1], np.random.default_rng(0), cfg, 4)  # K = 0
  assert single.shape == (1, 16, 24, 3)


def test_apply_window_rejects_mismatched_inputs(photo, degradation_cfg):
  params = D.sample_window_params(np.random.default_rng(0), degradation_cfg(), 3, 4)
  rng = np.random.default_rng(0)
  with pytest.raises(ValueError, match='not a multiple'):
    D.apply_window(np.zeros((3, 30, 32, 3), np.float32), params, 4, rng)
  with pytest.raises(ValueError, match='parameters are for 3 frames'):
    D.apply_window(np.zeros((2, 32, 32, 3), np.float32), params, 4, rng)
  with pytest.raises(ValueError, match=r'\[T, H, W, 3\]'):
    D.apply_window(np.zeros((3, 32, 32), np.float32), params, 4, rng)


@pytest.mark.parametrize('seed', range(4))
def test_lq_and_hr_crops_are_aligned(photo, seed, degradation_cfg):
  """Degrading an HR crop reproduces the matching crop of the clean LQ (before noise)."""
  cfg = degradation_cfg(blur_prob=1.0)
  scale, t = 4, 3
  hr = np.stack([photo[8 * i:8 * i + 320, :320] for i in range(t)])
  params = D.sample_window_params(np.random.default_rng(seed), cfg, t, scale)
  full = D.clean_downsample(hr, params, scale)
  a, b, h, w = 17, 23, 24, 28  # LQ crop origin and size
  crop = D.clean_downsample(hr[:, a * scale:(a + h) * scale, b * scale:(b + w) * scale],
                            params, scale)
  radius = max(D.frame_kernel(params['blur'], i).shape[0] for i in range(t)) // 2
  m = math.ceil((radius + 2 * scale) / scale) + 1  # border touched by the crop's padding
  np.testing.assert_allclose(crop[:, m:-m, m:-m], full[:, a + m:a + h - m, b + m:b + w - m],
                             atol=1e-5)
  # No noise and no compression: the full degradation is exactly the clean one.
  quiet = dict(params, noise=None, jpeg=None, second_round=None, video=None)
  np.testing.assert_array_equal(D.apply_window(hr, quiet, scale, np.random.default_rng(0)), full)


@pytest.mark.parametrize('kernel_type', K.KERNEL_TYPES)
def test_clean_lq_of_a_ramp_is_the_ramp_at_lq_centres(kernel_type, degradation_cfg):
  """Every kernel is centred: blur + downsample of a linear image shifts nothing."""
  cfg = degradation_cfg(blur_prob=1.0, kernel_types=(kernel_type,), kernel_probs=(1.0,))
  scale = 4
  hr = _ramp(40 * scale, 36 * scale)[None]
  params = D.sample_window_params(np.random.default_rng(3), cfg, 1, scale)
  lq = D.clean_downsample(hr, params, scale)[0]
  expected = _ramp_at_lq_centres(40, 36, scale)
  m = 10  # beyond the largest kernel and resize support
  np.testing.assert_allclose(lq[m:-m, m:-m], expected[m:-m, m:-m], atol=1e-5)
