"""Image and video quality metrics: PSNR, SSIM, tOF and flicker (LPIPS: models/lpips.py).

Protocol (docs/evaluation.md): PSNR and SSIM on RGB in [0, 255] with `scale` pixels of border
cropped, Y-channel (BT.601) figures beside them. The numbers match BasicSR and
scikit-image:

* PSNR = 10 log10(R^2 / MSE) per image, R = 255.
* SSIM as Wang et al. 2004: 11x11 Gaussian window with sigma 1.5, K1 = 0.01,
  K2 = 0.03, population covariance, the SSIM map averaged over the valid region
  (5 pixels of filter border dropped) and over channels. Identical to
  skimage.metrics.structural_similarity(gaussian_weights=True, sigma=1.5,
  use_sample_covariance=False, data_range=255, channel_axis=-1).

PSNR/SSIM/LPIPS are JAX functions of [B, H, W, C] (or one [H, W, C]) arrays: jit them
in a training step, or call them on NumPy frames in evaluation. Training outputs are
floats in [0, 1]; `quantize=True` scores them as the saved 8-bit images would be
(clip, x255, round: BasicSR's tensor2img). tOF and flicker are NumPy/OpenCV functions
of whole clips, for evaluation. No TensorFlow here.
"""

import cv2
import dm_pix
import jax
import jax.numpy as jnp
import numpy as np

# BT.601 luma for RGB in [0, 1] -> Y in [16, 235] (MATLAB rgb2ycbcr, BasicSR, skimage).
_Y_WEIGHTS = (65.481, 128.553, 24.966)


def to_255(img: jax.Array) -> jax.Array:
  """Float image in [0, 1] -> the float values of its 8-bit version (clip, x255, round)."""
  return jnp.round(jnp.clip(img.astype(jnp.float32), 0.0, 1.0) * 255.0)


def rgb_to_y(img: jax.Array, *, data_range: float = 255.0) -> jax.Array:
  """[..., 3] RGB on [0, data_range] -> [...] BT.601 Y on the same scale.

  With data_range=255 (the default) Y lies in [16, 235]; with data_range=1 in
  [16/255, 235/255]. Not rounded, as BasicSR (MATLAB rounds when given uint8).
  """
  img = jnp.asarray(img, jnp.float32) / data_range
  y = 16.0 + img @ jnp.asarray(_Y_WEIGHTS, jnp.float32)
  return y * (data_range / 255.0)


def _prepare(pred, gt, crop_border: int, y_channel: bool, data_range: float,
             quantize: bool) -> tuple[jax.Array, jax.Array, float]:
  """Shared front end: checks, 8-bit quantisation, border crop, Y conversion."""
  pred, gt = jnp.asarray(pred), jnp.asarray(gt)
  if pred.shape != gt.shape:
    raise ValueError(f'pred and gt shapes differ: {pred.shape} vs {gt.shape}')
  if pred.ndim not in (3, 4):
    raise ValueError(f'expected [H, W, C] or [B, H, W, C] images, got {pred.shape}')
  if quantize:
    if data_range != 255.0:
      raise ValueError('quantize=True scores 8-bit values: data_range must be 255')
    pred, gt = to_255(pred), to_255(gt)
  else:
    pred, gt = pred.astype(jnp.float32), gt.astype(jnp.float32)
  if crop_border:
    pred = pred[..., crop_border:-crop_border, crop_border:-crop_border, :]
    gt = gt[..., crop_border:-crop_border, crop_border:-crop_border, :]
  if y_channel:
    if pred.shape[-1] != 3:
      raise ValueError(f'y_channel needs RGB images, got {pred.shape[-1]} channels')
    pred = rgb_to_y(pred, data_range=data_range)[..., None]
    gt = rgb_to_y(gt, data_range=data_range)[..., None]
  return pred, gt, float(data_range)


def psnr(pred, gt, *, crop_border: int = 0, y_channel: bool = False,
         data_range: float = 255.0, quantize: bool = False) -> jax.Array:
  """Per-image PSNR in dB: shape [B] for a batch, a scalar for one image.

  Inputs on [0, data_range]; with quantize=True, floats in [0, 1] (then scored in
  [0, 255]). Identical images give +inf, as scikit-image.
  """
  pred, gt, data_range = _prepare(pred, gt, crop_border, y_channel, data_range,
                                  quantize)
  # dm-pix computes PSNR for a peak of 1.
  return dm_pix.psnr(pred / data_range, gt / data_range)


def ssim(pred, gt, *, crop_border: int = 0, y_channel: bool = False,
         data_range: float = 255.0, quantize: bool = False) -> jax.Array:
  """Per-image SSIM (Wang et al. settings, see the module docstring); [B] or scalar."""
  pred, gt, data_range = _prepare(pred, gt, crop_border, y_channel, data_range,
                                  quantize)
  return dm_pix.ssim(pred, gt, max_val=data_range, filter_size=11, filter_sigma=1.5,
                     k1=0.01, k2=0.03)


# ----------------------------------------------------------------- temporal consistency

# OpenCV Farneback parameters of the tOF of TecoGAN (Chu et al. 2020), as used by
# FMA-Net (CVPR 2024) for its published tOF (docs/evaluation.md): pyramid scale 0.5,
# 3 levels, 15x15 averaging window, 3 iterations, 5-pixel polynomial neighbourhood,
# its Gaussian sigma 1.2, no flags.
FARNEBACK = dict(pyr_scale=0.5, levels=3, winsize=15, iterations=3, poly_n=5,
                 poly_sigma=1.2, flags=0)


def _check_clips(outputs, gts) -> tuple[np.ndarray, np.ndarray]:
  outputs, gts = np.asarray(outputs), np.asarray(gts)
  if outputs.shape != gts.shape:
    raise ValueError(f'outputs and gts shapes differ: {outputs.shape} vs {gts.shape}')
  if outputs.ndim != 4 or outputs.shape[-1] != 3 or outputs.shape[0] < 2:
    raise ValueError(f'expected clips [T >= 2, H, W, 3], got {outputs.shape}')
  return outputs, gts


def _gray_uint8(frame: np.ndarray, data_range: float) -> np.ndarray:
  if frame.dtype != np.uint8:
    frame = np.clip(np.round(frame.astype(np.float64) * (255.0 / data_range)), 0, 255)
    frame = frame.astype(np.uint8)
  return cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY)


def _center_crop_32(flow: np.ndarray) -> np.ndarray:
  """TecoGAN's crop_8x8: centred crop to multiples of 32 keeping >= 8 px of border.

  Farneback flow is unreliable at the frame border. Frames too small for that crop
  (under 48 px) are scored whole.
  """
  sizes = []
  for n in flow.shape[:2]:
    m = (n // 32) * 32
    while m > n - 16:
      m -= 32
    sizes.append(m if m > 0 else n)
  (h, w), (n_h, n_w) = sizes, flow.shape[:2]
  y, x = (n_h - h) // 2, (n_w - w) // 2
  return flow[y:y + h, x:x + w]


def tof(outputs, gts, *, data_range: float = 255.0) -> float:
  """Temporal optical-flow error (lower is better), TecoGAN / FMA-Net protocol.

  For every pair of consecutive frames, Farneback flow (FARNEBACK, on 8-bit
  grayscale: cv2 RGB2GRAY) of the outputs and of the ground truth; the score is the
  per-pixel length of the difference between the two flow vectors, averaged over the
  TecoGAN centre crop and over frame pairs, in pixels. A classical flow, so the score
  does not depend on our network. Clips [T, H, W, 3], uint8 or floats on
  [0, data_range].
  """
  outputs, gts = _check_clips(outputs, gts)
  out_gray = [_gray_uint8(f, data_range) for f in outputs]
  gt_gray = [_gray_uint8(f, data_range) for f in gts]
  scores = []
  for t in range(len(outputs) - 1):
    flow_out = cv2.calcOpticalFlowFarneback(out_gray[t], out_gray[t + 1], None,
                                            **FARNEBACK)
    flow_gt = cv2.calcOpticalFlowFarneback(gt_gray[t], gt_gray[t + 1], None,
                                           **FARNEBACK)
    diff = _center_crop_32(flow_out.astype(np.float64) - flow_gt)
    scores.append(np.mean(np.sqrt(np.sum(diff * diff, axis=-1))))
  return float(np.mean(scores))


def flicker(outputs, gts, *, data_range: float = 255.0) -> float:
  """Mean |(out[t+1] - out[t]) - (gt[t+1] - gt[t])| over pixels, channels and t.

  In [0, 255] units (lower is better): temporal change the ground truth does not
  have, i.e. flicker; identical to the temporal loss without Charbonnier's eps.
  """
  outputs, gts = _check_clips(outputs, gts)
  scale = 255.0 / data_range
  out = outputs.astype(np.float64) * scale
  gt = gts.astype(np.float64) * scale
  return float(np.mean(np.abs(np.diff(out, axis=0) - np.diff(gt, axis=0))))
