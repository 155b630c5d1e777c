"""Degradation model eq. (1), y = C((x * k) downsampled by s + n), per window.

NumPy/OpenCV/PyAV only (no TensorFlow, no JAX): cv2 and PyAV release the GIL, so
tf.data runs these through tf.numpy_function in parallel, and the `degrade`
command runs the very same code. Two layers:

* ops on one frame (float32 [H, W, 3] in [0, 1]): `blur`, `downsample`,
  `gaussian_noise`, `poisson_noise`; compression (`jpeg` per frame, `video_codec`
  per window) is in codecs.py;
* window entry points: `sample_window_params` draws JSON-serialisable parameters
  for every frame of a window, drifting smoothly from frame to frame (one shaking
  camera, not five independent ones); `apply_window` applies them, so the same
  parameters (e.g. from a sidecar) rebuild the same output; `degrade_window` does
  both; `clean_downsample` is blur + resize alone, to check LQ/HR alignment.

Order per frame: [rolling shutter ->] blur -> downsample -> noise (or low light)
-> JPEG [-> second round: blur -> noise -> JPEG, at LQ resolution], then the video
codec over the whole window (bracketed: real-camera effects, off by default,
camera_effects.py). JPEG and the codec can both apply, as in RealBasicVSR
(per-frame JPEG, then a video codec, in each round): footage compressed frame by
frame (MJPEG cameras, image sequences) and then transcoded; each alone is just
one more case of the mix.
"""

from collections.abc import Iterable, Iterator, Sequence
import math
from typing import Any

import cv2
import numpy as np

from clarity_jax.data import camera_effects
from clarity_jax.data import codecs
from clarity_jax.data import kernels

RESIZE_MODES = ('bicubic', 'area', 'bilinear')
# Poisson noise: photon count at white. Real-ESRGAN uses 2**ceil(log2(#grey levels)),
# i.e. 256 for natural 8-bit images; fixing it keeps the noise independent of content.
POISSON_PEAK = 256.0
# ITU-R BT.601 luma, as cv2.COLOR_RGB2GRAY (gray noise is luma noise).
_LUMA = np.array([0.299, 0.587, 0.114], np.float32)
# Blur: OpenCV's default border (reflect without repeating the edge pixel), as Real-ESRGAN.
_BLUR_BORDER = cv2.BORDER_REFLECT_101
# Resize: half-sample symmetric border, the continuous-image view behind pixel centres.
_RESIZE_BORDER = cv2.BORDER_REFLECT
# Shrinks the second round's blur ranges, as Real-ESRGAN's blur_sigma2 = blur_sigma / 2.
_SECOND_ROUND_BLUR_SHRINK = 0.5
_PARAMS_VERSION = 1


# ----------------------------------------------------------------------------- ops


def blur(img: np.ndarray, kernel: np.ndarray) -> np.ndarray:
  """Convolves [H, W, C] with an odd-sized kernel; reflect border keeps constants constant."""
  # cv2.filter2D correlates; flipping the kernel makes it a true convolution, so a
  # motion kernel smears along its trajectory and not its mirror image.
  return cv2.filter2D(np.ascontiguousarray(img, np.float32), -1,
                      np.ascontiguousarray(kernel[::-1, ::-1], np.float32),
                      borderType=_BLUR_BORDER)


def _keys_cubic(x: np.ndarray, a: float = -0.5) -> np.ndarray:
  x = np.abs(x)
  return np.where(x < 1, (a + 2) * x**3 - (a + 3) * x**2 + 1,
                  np.where(x < 2, a * x**3 - 5 * a * x**2 + 8 * a * x - 4 * a, 0.0))


def _triangle(x: np.ndarray) -> np.ndarray:
  return np.maximum(1.0 - np.abs(x), 0.0)


def antialias_taps(scale: int, mode: str) -> tuple[np.ndarray, int]:
  """1-D taps and anchor of an antialiased reduction by an integer `scale`.

  Output pixel i is centred on input coordinate (i + 1/2) s - 1/2 (pixel centres
  aligned); input j = i s + m gets weight f((m - (s - 1)/2) / s) with f the Keys
  cubic (a = -0.5) or the triangle, stretched by s: PIL's BICUBIC / BILINEAR.
  """
  f, support = {'bicubic': (_keys_cubic, 2.0), 'bilinear': (_triangle, 1.0)}[mode]
  reach = int(math.ceil(support * scale + (scale - 1) / 2))
  m = np.arange(-reach, reach + 1)
  w = f((m - (scale - 1) / 2) / scale)
  keep = np.nonzero(w)[0]
  m, w = m[keep[0]:keep[-1] + 1], w[keep[0]:keep[-1] + 1]
  return (w / w.sum()).astype(np.float32), int(-m[0])


def downsample(img: np.ndarray, scale: int, mode: str) -> np.ndarray:
  """[s h, s w, C] -> [h, w, C], pixel-centre aligned, antialiased.

  `area` is the s x s box mean (cv2.INTER_AREA, exact for integer factors).
  `bicubic` / `bilinear` match PIL's antialiased resize to float precision
  (< 1e-6) away from the border; within ~2 s HR pixels of it they differ (PIL
  renormalises the truncated filter, we reflect the image). OpenCV's own
  INTER_CUBIC / INTER_LINEAR do not antialias when reducing, hence the
  hand-written taps, applied by cv2.sepFilter2D and subsampled.
  """
  h, w = img.shape[:2]
  if scale < 1 or h % scale or w % scale:
    raise ValueError(f'cannot downsample {h}x{w} by {scale}: sizes must be multiples of it')
  img = np.ascontiguousarray(img, np.float32)
  if scale == 1:
    return img
  if mode == 'area':
    return cv2.resize(img, (w // scale, h // scale), interpolation=cv2.INTER_AREA)
  if mode not in RESIZE_MODES:
    raise ValueError(f'unknown resize mode {mode!r}; expected one of {RESIZE_MODES}')
  taps, anchor = antialias_taps(scale, mode)
  out = cv2.sepFilter2D(img, -1, taps, taps, anchor=(anchor, anchor), borderType=_RESIZE_BORDER)
  return np.ascontiguousarray(out[::scale, ::scale])


def _luma(img: np.ndarray) -> np.ndarray:
  return (img @ _LUMA)[..., None]


def gaussian_noise(img: np.ndarray, sigma: float, rng: np.random.Generator,
                   gray: bool = False) -> np.ndarray:
  """Adds N(0, sigma^2) noise (sigma in [0, 1] units); gray: one value for R, G, B."""
  shape = img.shape[:-1] + (1,) if gray else img.shape
  noise = rng.normal(0.0, sigma, shape).astype(np.float32)
  return np.clip(img + noise, 0.0, 1.0)


def poisson_noise(img: np.ndarray, scale: float, rng: np.random.Generator,
                  gray: bool = False) -> np.ndarray:
  """Adds scale * (Poisson(x P) / P - x), P = POISSON_PEAK: shot noise, variance scale^2 x / P.

  gray: the noise of the luma, added to R, G and B alike (Real-ESRGAN).
  """
  x = np.clip(_luma(img) if gray else img, 0.0, 1.0).astype(np.float64)
  noise = (rng.poisson(x * POISSON_PEAK) / POISSON_PEAK - x) * scale
  return np.clip(img + noise.astype(np.float32), 0.0, 1.0)


# ------------------------------------------------------------- window parameters


def _drift_path(rng: np.random.Generator, r: kernels.Range, n: int, drift: float) -> list:
  """n values in r, consecutive ones at most drift * (high - low) apart.

  A random walk with bounded, slowly changing velocity (smooth, like a camera
  path, not white jitter) that reflects at the bounds, or wraps for angles.
  Integer parameters walk in floats with an integer step bound, then round.
  """
  span = r.high - r.low
  if span <= 0:
    return [int(r.low) if r.integer else float(r.low)] * n
  max_step = min(drift, 1.0) * span
  if r.integer:
    max_step = math.floor(max_step)
  x = rng.uniform(r.low, r.high)
  v = rng.uniform(-1.0, 1.0) * max_step
  values = []
  for i in range(n):
    if i:
      v = float(np.clip(v + rng.uniform(-0.5, 0.5) * max_step, -max_step, max_step))
      x += v
      if r.periodic:
        x = r.low + (x - r.low) % span
      elif x > r.high or x < r.low:
        edge = r.high if x > r.high else r.low
        x, v = min(max(2 * edge - x, r.low), r.high), -v
    values.append(int(round(x)) if r.integer else float(x))
  return values


def _drift_frames(rng: np.random.Generator, ranges: dict[str, kernels.Range], n: int,
                  drift: float) -> list[dict[str, Any]]:
  paths = {name: _drift_path(rng, r, n, drift) for name, r in ranges.items()}
  return [{name: paths[name][t] for name in ranges} for t in range(n)]


def _choice(rng: np.random.Generator, options: Sequence[str], probs: Sequence[float]) -> str:
  p = np.asarray(probs, np.float64)
  return str(options[rng.choice(len(options), p=p / p.sum())])


def _sample_blur(rng: np.random.Generator, cfg: Any, n: int,
                 shrink: float = 1.0) -> dict | None:
  if rng.random() >= cfg.blur_prob:
    return None
  kernel_type = _choice(rng, cfg.kernel_types, cfg.kernel_probs)
  blur_params: dict[str, Any] = {'type': kernel_type}
  if kernels.needs_size(kernel_type):
    blur_params['size'] = kernels.sample_kernel_size(rng, cfg)
  ranges = kernels.kernel_param_ranges(kernel_type, cfg, shrink)
  blur_params['frames'] = _drift_frames(rng, ranges, n, cfg.drift)
  if 'size' in blur_params:  # one size for the window: its widest frame's
    blur_params['size'] = kernels.fitted_size(blur_params['size'], blur_params['frames'], cfg)
  return blur_params


def _sample_noise(rng: np.random.Generator, cfg: Any, n: int) -> dict | None:
  if rng.random() >= cfg.noise_prob:
    return None
  poisson = bool(rng.random() < cfg.poisson_prob)
  gray = bool(rng.random() < cfg.gray_noise_prob)
  name, r = (('scale', cfg.poisson_scale_range) if poisson else
             ('sigma255', cfg.gaussian_sigma255_range))
  return {'type': 'poisson' if poisson else 'gaussian', 'gray': gray,
          'frames': _drift_frames(rng, {name: kernels.Range(*r)}, n, cfg.drift)}


def _chance(rng: np.random.Generator, prob: float) -> bool:
  """rng.random() < prob, drawing nothing when prob is 0: an effect that is off
  leaves the window's stream, and so every existing output, as it was."""
  return prob > 0 and bool(rng.random() < prob)


def _sample_low_light(rng: np.random.Generator, cfg: Any, n: int) -> dict | None:
  """{'bits', 'gamma', 'frames': [{exposure, shot_gain, read_sigma, row_sigma, col_sigma}]}.

  The ADC's bits and the tone curve's gamma are the camera's, fixed for the
  window; exposure, gain and banding drift (auto exposure, auto ISO).
  """
  if not _chance(rng, getattr(cfg, 'low_light_prob', 0.0)):
    return None
  low, high = cfg.low_light_bits_range
  bits = int(rng.integers(low, high + 1))
  gamma = float(rng.uniform(*cfg.low_light_gamma_range))
  ranges = {name: kernels.Range(*getattr(cfg, f'low_light_{name}_range'))
            for name in camera_effects.LOW_LIGHT_FIELDS}
  return {'bits': bits, 'gamma': gamma, 'frames': _drift_frames(rng, ranges, n, cfg.drift)}


def _sample_rolling_shutter(rng: np.random.Generator, cfg: Any) -> dict | None:
  """{'readout', 'method'}: one readout time per window (a sensor constant), as a
  share of the frame interval; method 'blend', the approximation (a source that
  renders it exactly sets 'rendered')."""
  if not _chance(rng, getattr(cfg, 'rolling_shutter_prob', 0.0)):
    return None
  return {'readout': float(rng.uniform(*cfg.rolling_shutter_readout_range)), 'method': 'blend'}


def _sample_jpeg(rng: np.random.Generator, cfg: Any, n: int) -> dict | None:
  if rng.random() >= cfg.jpeg_prob:
    return None
  r = kernels.Range(*cfg.jpeg_quality_range, integer=True)
  return {'frames': _drift_frames(rng, {'quality': r}, n, cfg.drift)}


def sample_window_params(rng: np.random.Generator, cfg: Any, num_frames: int,
                         scale: int) -> dict[str, Any]:
  """JSON-serialisable degradation parameters for every frame of a window.

  Discrete choices (kernel family and size, resize mode, noise kind, codec and
  CRF) hold for the whole window; continuous ones follow smooth paths, changing
  by at most cfg.drift of their range from one frame to the next. `cfg` is
  degradation_config.get_config() or any object with its attributes. A
  low-light window has no first-round 'noise': its sensor noise is the low
  light's. Effects whose probability is 0 draw nothing ('low_light' and
  'rolling_shutter' None): the stream, and every output, is what it was without them.
  """
  if num_frames < 1:
    raise ValueError(f'num_frames must be >= 1, got {num_frames}')
  n = num_frames
  params: dict[str, Any] = {'version': _PARAMS_VERSION, 'scale': int(scale), 'num_frames': n}
  params['blur'] = _sample_blur(rng, cfg, n)
  params['resize'] = _choice(rng, cfg.resize_modes, cfg.resize_probs)
  low_light = _sample_low_light(rng, cfg, n)
  params['noise'] = None if low_light else _sample_noise(rng, cfg, n)
  params['jpeg'] = _sample_jpeg(rng, cfg, n)
  params['second_round'] = None
  if rng.random() < cfg.second_round_prob:
    params['second_round'] = {'blur': _sample_blur(rng, cfg, n, _SECOND_ROUND_BLUR_SHRINK),
                              'noise': _sample_noise(rng, cfg, n),
                              'jpeg': _sample_jpeg(rng, cfg, n)}
  params['video'] = None
  if rng.random() < cfg.video_codec_prob:
    crf = int(rng.integers(cfg.video_crf_range[0], cfg.video_crf_range[1] + 1))
    params['video'] = {'codec': str(cfg.video_codec), 'crf': crf}
  params['low_light'] = low_light
  params['rolling_shutter'] = _sample_rolling_shutter(rng, cfg)
  return params


# ------------------------------------------------------------ applying parameters


def frame_kernel(blur_params: dict, t: int) -> np.ndarray:
  """The blur kernel of frame t, from a window's 'blur' (or second round 'blur') entry."""
  spec = {k: v for k, v in blur_params.items() if k != 'frames'}
  return kernels.make_kernel({**spec, **blur_params['frames'][t]})


def _apply_blur(x: np.ndarray, blur_params: dict | None, t: int) -> np.ndarray:
  return x if blur_params is None else blur(x, frame_kernel(blur_params, t))


def _apply_noise(x: np.ndarray, noise_params: dict | None, t: int,
                 rng: np.random.Generator) -> np.ndarray:
  if noise_params is None:
    return x
  values = noise_params['frames'][t]
  if noise_params['type'] == 'poisson':
    return poisson_noise(x, values['scale'], rng, noise_params['gray'])
  return gaussian_noise(x, values['sigma255'] / 255.0, rng, noise_params['gray'])


def _apply_jpeg(x: np.ndarray, jpeg_params: dict | None, t: int) -> np.ndarray:
  return x if jpeg_params is None else codecs.jpeg(x, jpeg_params['frames'][t]['quality'])


def _check(shape: tuple[int, ...], params: dict, scale: int) -> None:
  if len(shape) != 4 or shape[-1] != 3:
    raise ValueError(f'expected an HR window [T, H, W, 3], got shape {shape}')
  if shape[0] != params['num_frames'] or scale != params['scale']:
    raise ValueError(f'parameters are for {params["num_frames"]} frames at scale '
                     f'{params["scale"]}, got {shape[0]} frames at scale {scale}')
  if shape[1] % scale or shape[2] % scale:
    raise ValueError(f'HR size {shape[1]}x{shape[2]} is not a multiple of scale {scale}')


def clean_frame(hr_frame: np.ndarray, params: dict, t: int) -> np.ndarray:
  """First-round blur + downsample of frame t, clipped: the LQ before noise and codecs."""
  x = _apply_blur(hr_frame, params['blur'], t)
  return np.clip(downsample(x, params['scale'], params['resize']), 0.0, 1.0)


def degrade_frame(hr_frame: np.ndarray, params: dict, t: int,
                  rng: np.random.Generator) -> np.ndarray:
  """Everything but the video codec for frame t (frame by frame, for long clips).

  hr_frame is the frame as captured: through shutter_frames when the window has
  a rolling shutter.
  """
  x = clean_frame(hr_frame, params, t)
  light = params.get('low_light')  # absent from parameters older than the effect
  x = (camera_effects.apply_low_light(x, light, t, rng) if light else
       _apply_noise(x, params['noise'], t, rng))
  x = _apply_jpeg(x, params['jpeg'], t)
  second = params['second_round']
  if second is not None:
    x = _apply_blur(x, second['blur'], t)
    x = _apply_noise(np.clip(x, 0.0, 1.0), second['noise'], t, rng)
    x = _apply_jpeg(x, second['jpeg'], t)
  return np.clip(x, 0.0, 1.0).astype(np.float32)


def shutter_frames(frames: Iterable[np.ndarray], params: dict) -> Iterator[np.ndarray]:
  """A window's HR frames as its rolling shutter (if any) captured them, streamed."""
  return camera_effects.rolling_shutter_frames(frames, params.get('rolling_shutter'))


def compress_window(lq: np.ndarray, params: dict) -> np.ndarray:
  """The window-level step: the video codec over all frames, if the parameters ask."""
  video = params['video']
  return lq if video is None else codecs.video_codec(lq, video['crf'], video['codec'])


def apply_window(hr: np.ndarray, params: dict, scale: int,
                 rng: np.random.Generator) -> np.ndarray:
  """hr [T, H, W, 3] float32 in [0, 1], H and W multiples of scale -> lq [T, H/s, W/s, 3].

  Deterministic given `params`; `rng` only draws the noise realisations (frame
  by frame, in order), so (params, rng state) reproduce the output exactly.
  """
  _check(hr.shape, params, scale)
  lq = np.stack([degrade_frame(x, params, t, rng)
                 for t, x in enumerate(shutter_frames(hr, params))])
  return compress_window(lq, params)


def degrade_window(hr: np.ndarray, rng: np.random.Generator, cfg: Any,
                   scale: int) -> tuple[np.ndarray, dict[str, Any]]:
  """Samples parameters for this window and applies them: (lq, params)."""
  params = sample_window_params(rng, cfg, hr.shape[0], scale)
  return apply_window(hr, params, scale, rng), params


def clean_downsample(hr: np.ndarray, params: dict, scale: int) -> np.ndarray:
  """[T, H, W, 3] -> [T, H/s, W/s, 3] with the window's blur and resize only."""
  _check(hr.shape, params, scale)
  return np.stack([clean_frame(hr[t], params, t) for t in range(hr.shape[0])])
