"""Metrics against scikit-image, NumPy references and closed forms."""

import functools

import jax
import numpy as np
import pytest
from skimage import color
from skimage import data as skdata
from skimage.metrics import peak_signal_noise_ratio
from skimage.metrics import structural_similarity

from clarity_jax import metrics


def _natural_pair(name: str, seed: int, size: int = 96) -> tuple[np.ndarray, np.ndarray]:
  """A crop of a real photograph and a noisy, slightly shifted copy, uint8 RGB."""
  img = getattr(skdata, name)()[:, :, :3]
  rng = np.random.default_rng(seed)
  gt = img[40:40 + size, 60:60 + size]
  degraded = img[41:41 + size, 60:60 + size].astype(np.float64)
  degraded += rng.normal(0, 6, degraded.shape)
  return np.clip(np.round(degraded), 0, 255).astype(np.uint8), gt


def _random_pair(seed: int, size=(40, 52)) -> tuple[np.ndarray, np.ndarray]:
  rng = np.random.default_rng(seed)
  gt = rng.integers(0, 256, (*size, 3), dtype=np.uint8)
  pred = np.clip(gt + rng.normal(0, 20, gt.shape), 0, 255).astype(np.uint8)
  return pred, gt


PAIRS = [('random', _random_pair(0)), ('astronaut', _natural_pair('astronaut', 1)),
         ('coffee', _natural_pair('coffee', 2)), ('chelsea', _natural_pair('chelsea', 3))]


def _crop(img, border):
  return img[border:-border, border:-border] if border else img


def _sk_y(img_uint8):
  """skimage's BT.601 Y in [16, 235], an independent implementation."""
  return color.rgb2ycbcr(img_uint8)[..., 0]


def test_rgb_to_y_matches_skimage():
  pred, _ = PAIRS[1][1]
  expected = _sk_y(pred)
  np.testing.assert_allclose(metrics.rgb_to_y(pred), expected, atol=1e-3)
  np.testing.assert_allclose(metrics.rgb_to_y(pred / 255.0, data_range=1.0),
                             expected / 255.0, atol=1e-5)
  y = np.asarray(metrics.rgb_to_y(np.array([[[0, 0, 0], [255, 255, 255]]], np.uint8)))
  np.testing.assert_allclose(y, [[16.0, 235.0]], atol=1e-3)


@pytest.mark.parametrize('name,pair', PAIRS, ids=[p[0] for p in PAIRS])
@pytest.mark.parametrize('y_channel', [False, True])
@pytest.mark.parametrize('crop_border', [0, 4])
def test_psnr_ssim_match_skimage(name, pair, y_channel, crop_border):
  del name
  pred, gt = pair
  if y_channel:
    ref_pred, ref_gt, channel_axis = _sk_y(pred), _sk_y(gt), None
  else:
    ref_pred, ref_gt, channel_axis = pred.astype(np.float64), gt.astype(np.float64), -1
  ref_pred, ref_gt = _crop(ref_pred, crop_border), _crop(ref_gt, crop_border)
  ref_psnr = peak_signal_noise_ratio(ref_gt, ref_pred, data_range=255)
  ref_ssim = structural_similarity(ref_gt, ref_pred, gaussian_weights=True, sigma=1.5,
                                   use_sample_covariance=False, data_range=255,
                                   channel_axis=channel_axis)
  kwargs = dict(crop_border=crop_border, y_channel=y_channel)
  assert abs(float(metrics.psnr(pred, gt, **kwargs)) - ref_psnr) < 0.01
  assert abs(float(metrics.ssim(pred, gt, **kwargs)) - ref_ssim) < 1e-3


def test_batched_jitted_quantized_like_the_protocol():
  """[B, H, W, 3] floats in [0, 1], jitted, scored as their 8-bit versions."""
  rng = np.random.default_rng(7)
  gt = rng.uniform(0, 1, (3, 32, 36, 3)).astype(np.float32)
  pred = (gt + rng.normal(0, 0.05, gt.shape)).astype(np.float32)  # outside [0, 1] too
  as_uint8 = lambda x: np.round(np.clip(x, 0, 1) * 255).astype(np.uint8)
  psnr_fn = jax.jit(functools.partial(metrics.psnr, crop_border=2, quantize=True))
  ssim_fn = jax.jit(functools.partial(metrics.ssim, crop_border=2, y_channel=True,
                                      quantize=True))
  got_psnr, got_ssim = np.asarray(psnr_fn(pred, gt)), np.asarray(ssim_fn(pred, gt))
  assert got_psnr.shape == got_ssim.shape == (3,)
  for i in range(3):
    p, g = as_uint8(pred[i])[2:-2, 2:-2], as_uint8(gt[i])[2:-2, 2:-2]
    assert abs(got_psnr[i] - peak_signal_noise_ratio(g, p, data_range=255)) < 0.01
    ref = structural_similarity(_sk_y(g), _sk_y(p), gaussian_weights=True, sigma=1.5,
                                use_sample_covariance=False, data_range=255)
    assert abs(got_ssim[i] - ref) < 1e-3
  # Unquantised [0, 1] floats with data_range=1: the same PSNR as on [0, 255].
  np.testing.assert_allclose(metrics.psnr(pred, gt, data_range=1.0),
                             metrics.psnr(pred * 255, gt * 255), rtol=1e-5)
  assert float(metrics.ssim(gt, gt, quantize=True)[0]) == pytest.approx(1.0, abs=1e-6)
  assert np.isinf(float(metrics.psnr(gt, gt)[0]))


def test_psnr_ssim_reject_bad_input():
  with pytest.raises(ValueError, match='shapes differ'):
    metrics.psnr(np.zeros((8, 8, 3)), np.zeros((8, 9, 3)))
  with pytest.raises(ValueError, match='data_range must be 255'):
    metrics.ssim(np.zeros((16, 16, 3)), np.zeros((16, 16, 3)), quantize=True,
                 data_range=1.0)


def _panning_clip(frames: int = 5, size: int = 96) -> np.ndarray:
  """Real photograph under a camera panning 2 px down and 1 px right per frame."""
  img = skdata.astronaut()
  return np.stack([img[100 + 2 * t:100 + 2 * t + size, 150 + t:150 + t + size]
                   for t in range(frames)])


def test_tof_zero_for_gt_and_grows_with_flicker():
  gt = _panning_clip()
  assert metrics.tof(gt, gt) == 0.0
  rng = np.random.default_rng(0)
  scores = []
  for sigma in (2.0, 5.0, 20.0):  # temporally independent noise: flicker
    out = np.clip(gt + rng.normal(0, sigma, gt.shape), 0, 255).astype(np.uint8)
    scores.append(metrics.tof(out, gt))
    # The same clips as floats in [0, 1]: the same 8-bit frames, the same score.
    assert metrics.tof(out / 255.0, gt / 255.0, data_range=1.0) == pytest.approx(
        scores[-1], abs=1e-9)
  assert 0.0 < scores[0] < scores[1] < scores[2]
  # Jitter (ghosting / unstable alignment) moves the flow far more.
  offsets = np.array([[0, 0], [1, -1], [-1, 1], [2, 0], [0, -2]])
  img = skdata.astronaut()
  jittered = np.stack([img[100 + 2 * t + dy:196 + 2 * t + dy, 150 + t + dx:246 + t + dx]
                       for t, (dy, dx) in enumerate(offsets)])
  assert metrics.tof(jittered, gt) > 1.0 > scores[2]
  with pytest.raises(ValueError, match='T >= 2'):
    metrics.tof(gt[:1], gt[:1])


def test_flicker_closed_form():
  gt = _panning_clip().astype(np.float64)
  assert metrics.flicker(gt, gt) == 0.0
  # A static bias is no flicker; per-frame offsets c_t give mean |c_{t+1} - c_t|.
  assert metrics.flicker(gt + 7.0, gt) == pytest.approx(0.0, abs=1e-9)
  c = np.array([0.0, 3.0, -2.0, 4.0, 4.0])
  assert metrics.flicker(gt + c[:, None, None, None], gt) == pytest.approx(
      np.mean(np.abs(np.diff(c))))
  assert metrics.flicker(gt / 255 + c[:, None, None, None] / 255, gt / 255,
                         data_range=1.0) == pytest.approx(np.mean(np.abs(np.diff(c))))
