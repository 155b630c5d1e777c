"""Blur kernels k of eq. (1), in NumPy: camera motion, defocus, Real-ESRGAN families.

Every kernel is a deterministic function of explicit parameters (a dict with a
'type'), so a window's per-frame kernels can drift smoothly and be written to a
JSON sidecar and rebuilt bit for bit. `sample_kernel_params` draws those
parameters from an np.random.Generator within the ranges of
degradation_config.get_config(); `kernel_param_ranges` exposes the
ranges so degradations.py can make them drift from frame to frame.

All kernels are odd-sized, sum to 1 and have their centre of mass on the centre
pixel (so blurring never shifts the image and LQ stays aligned with HR). All are
non-negative except `sinc`, whose negative lobes are the point: it models the
ringing and overshoot of sharpening and compression (Real-ESRGAN), not a PSF.
"""

from collections.abc import Mapping
import math
from typing import Any, NamedTuple

import numpy as np
from scipy import special

KERNEL_TYPES = ('motion', 'defocus', 'gaussian_iso', 'gaussian_aniso', 'generalized',
                'plateau', 'sinc')

# Shape of a motion trajectory, beyond its length and direction (not in the config:
# they describe what a hand-held or vehicle-mounted camera does within one exposure).
# Total turn of the heading along the path, radians: bent, not only straight strokes.
MOTION_CURVATURE_RANGE = (-2.0, 2.0)
# Amplitude of a sinusoidal heading oscillation, radians: S-shaped jitter.
MOTION_WOBBLE_RANGE = (0.0, 0.8)
# Speed change over the exposure (0: constant speed; +-1: starts or ends at rest),
# which makes the kernel brighter where the camera moved slowly.
MOTION_ACCEL_RANGE = (-0.8, 0.8)
# Trajectory samples per pixel of length, splatted bilinearly (sub-pixel accurate).
_MOTION_SAMPLES_PER_PIXEL = 32
# Sub-samples per pixel side for the anti-aliased disk edge of defocus.
_DEFOCUS_SUPERSAMPLING = 16


class Range(NamedTuple):
  """A parameter's range; periodic ones (angles) wrap around instead of reflecting."""
  low: float
  high: float
  periodic: bool = False
  integer: bool = False


def _normalise(kernel: np.ndarray) -> np.ndarray:
  return (kernel / kernel.sum()).astype(np.float32)


def _grid(size: int) -> tuple[np.ndarray, np.ndarray]:
  """Pixel-centre coordinates (x right, y down) relative to the centre pixel."""
  if size < 1 or size % 2 == 0:
    raise ValueError(f'kernel size must be odd and positive, got {size}')
  r = np.arange(size, dtype=np.float64) - size // 2
  return np.meshgrid(r, r)  # xx, yy


def _quadratic_form(size: int, sigma_x: float, sigma_y: float, theta: float) -> np.ndarray:
  """x^T Sigma^-1 x on the grid, Sigma = R diag(sx^2, sy^2) R^T (Real-ESRGAN)."""
  xx, yy = _grid(size)
  c, s = math.cos(theta), math.sin(theta)
  u = c * xx + s * yy  # coordinates along the rotated principal axes
  v = -s * xx + c * yy
  return (u / sigma_x)**2 + (v / sigma_y)**2


def gaussian_kernel(size: int, sigma_x: float, sigma_y: float | None = None,
                    theta: float = 0.0) -> np.ndarray:
  """Anisotropic Gaussian rotated by theta (isotropic when sigma_y is None)."""
  sigma_y = sigma_x if sigma_y is None else sigma_y
  return _normalise(np.exp(-0.5 * _quadratic_form(size, sigma_x, sigma_y, theta)))


def generalized_gaussian_kernel(size: int, sigma_x: float, sigma_y: float, theta: float,
                                beta: float) -> np.ndarray:
  """exp(-0.5 (x^T S^-1 x)^beta): beta < 1 heavy tails, beta > 1 flat top."""
  return _normalise(np.exp(-0.5 * _quadratic_form(size, sigma_x, sigma_y, theta)**beta))


def plateau_kernel(size: int, sigma_x: float, sigma_y: float, theta: float,
                   beta: float) -> np.ndarray:
  """1 / (1 + (x^T S^-1 x)^beta): a flat top with polynomial tails."""
  return _normalise(1.0 / (1.0 + _quadratic_form(size, sigma_x, sigma_y, theta)**beta))


def sinc_kernel(size: int, cutoff: float) -> np.ndarray:
  """Circular low-pass filter with cut-off omega_c (radians/pixel): ringing artefacts.

  The inverse Fourier transform of the disk |omega| < omega_c, sampled:
  omega_c J1(omega_c r) / (2 pi r), with its limit omega_c^2 / (4 pi) at r = 0.
  """
  xx, yy = _grid(size)
  r = np.hypot(xx, yy)
  with np.errstate(invalid='ignore', divide='ignore'):
    k = cutoff * special.j1(cutoff * r) / (2 * np.pi * r)
  k[size // 2, size // 2] = cutoff**2 / (4 * np.pi)
  return _normalise(k)


def defocus_kernel(radius: float, size: int | None = None) -> np.ndarray:
  """Disk of the given radius (pixels) with an anti-aliased edge.

  Each pixel gets the share of its area inside the disk, estimated on a 16x16
  sub-pixel grid, so the kernel varies smoothly with a fractional radius.
  """
  needed = 2 * math.ceil(radius + 0.5) + 1
  size = needed if size is None else size
  if size < needed:
    raise ValueError(f'defocus radius {radius} needs a kernel of size >= {needed}, got {size}')
  n = _DEFOCUS_SUPERSAMPLING
  offsets = (np.arange(n) + 0.5) / n - 0.5
  xx, yy = _grid(size)
  sx = xx[..., None, None] + offsets[None, None, None, :]
  sy = yy[..., None, None] + offsets[None, None, :, None]
  coverage = (sx**2 + sy**2 <= radius**2).mean(axis=(-1, -2))
  if coverage.sum() == 0:  # radius far below a pixel: the disk is a point
    coverage[size // 2, size // 2] = 1.0
  return _normalise(coverage)


def motion_trajectory(length: float, angle: float, curvature: float = 0.0,
                      wobble: float = 0.0, phase: float = 0.0, accel: float = 0.0,
                      num_samples: int | None = None) -> np.ndarray:
  """Camera path during one exposure, sampled at equal time steps: [N, 2] (x, y).

  The heading along the path (arc-length fraction u in [0, 1]) is
  angle + curvature (u - 1/2) + wobble sin(2 pi u + phase): a smooth curve of
  the given length. The speed changes linearly in time (accel), so equal time
  steps are unequally spaced. The path is centred on its time-average, which is
  the kernel's centre of mass: the blurred frame is not shifted.
  """
  if not 0.0 <= length:
    raise ValueError(f'motion length must be >= 0, got {length}')
  if abs(accel) >= 1.0:
    raise ValueError(f'motion accel must be in (-1, 1), got {accel}')
  num_samples = num_samples or max(64, int(math.ceil(length * _MOTION_SAMPLES_PER_PIXEL)))
  # Position as a function of arc length, integrated on a fine grid (trapezoid; 512
  # steps keep a 40 px path within 2e-4 px of the exact one, at an eighth of 4096's cost).
  u = np.linspace(0.0, 1.0, 513)
  heading = angle + curvature * (u - 0.5) + wobble * np.sin(2 * np.pi * u + phase)
  step = np.stack([np.cos(heading), np.sin(heading)], axis=-1)
  seg = 0.5 * (step[1:] + step[:-1]) * (length / (len(u) - 1))
  path = np.concatenate([np.zeros((1, 2)), np.cumsum(seg, axis=0)])
  # Arc length reached at time t: s(t) = t + accel (t^2 - t), monotonic for |accel| < 1.
  t = (np.arange(num_samples) + 0.5) / num_samples
  s = t + accel * (t * t - t)
  points = np.stack([np.interp(s, u, path[:, 0]), np.interp(s, u, path[:, 1])], axis=-1)
  return points - points.mean(axis=0)


def motion_kernel(length: float, angle: float, curvature: float = 0.0, wobble: float = 0.0,
                  phase: float = 0.0, accel: float = 0.0, size: int | None = None) -> np.ndarray:
  """Motion blur along `motion_trajectory`, rasterised with sub-pixel accuracy.

  Each of the dense time samples is splatted bilinearly onto its four nearest
  pixels, which keeps the centre of mass exactly where the path's is. The size
  is the smallest odd one that holds the path (or `size`, if larger).
  """
  points = motion_trajectory(length, angle, curvature, wobble, phase, accel)
  needed = 2 * (int(math.floor(np.abs(points).max())) + 1) + 1
  size = needed if size is None else size
  if size < needed:
    raise ValueError(f'motion length {length} needs a kernel of size >= {needed}, got {size}')
  c = points + size // 2
  ij0 = np.floor(c).astype(np.int64)
  f = c - ij0
  kernel = np.zeros(size * size, np.float64)
  for dx, dy in ((0, 0), (1, 0), (0, 1), (1, 1)):
    w = (f[:, 0] if dx else 1 - f[:, 0]) * (f[:, 1] if dy else 1 - f[:, 1])
    # np.bincount, not np.add.at: the same sums, much faster.
    kernel += np.bincount((ij0[:, 1] + dy) * size + ij0[:, 0] + dx, w, size * size)
  return _normalise(kernel.reshape(size, size))


def kernel_param_ranges(kernel_type: str, cfg: Any, shrink: float = 1.0) -> dict[str, Range]:
  """The continuous parameters of a kernel type and their ranges.

  `shrink` scales the size-like ranges (sigmas, lengths, radii) towards their low
  end: the second degradation round uses 0.5, as Real-ESRGAN halves its second
  blur sigma range (0.2-1.5 after 0.2-3).
  """
  def scaled(r: tuple[float, float]) -> Range:
    return Range(r[0], r[0] + (r[1] - r[0]) * shrink)

  angle = Range(-math.pi, math.pi, periodic=True)
  sigma = scaled(cfg.gaussian_sigma_range)
  table = {
      'motion': dict(length=scaled(cfg.motion_length_range), angle=angle,
                     curvature=Range(*MOTION_CURVATURE_RANGE),
                     wobble=Range(*MOTION_WOBBLE_RANGE), phase=angle,
                     accel=Range(*MOTION_ACCEL_RANGE)),
      'defocus': dict(radius=scaled(cfg.defocus_radius_range)),
      'gaussian_iso': dict(sigma_x=sigma),
      'gaussian_aniso': dict(sigma_x=sigma, sigma_y=sigma, theta=angle),
      'generalized': dict(sigma_x=sigma, sigma_y=sigma, theta=angle,
                          beta=Range(*cfg.generalized_beta_range)),
      'plateau': dict(sigma_x=sigma, sigma_y=sigma, theta=angle,
                      beta=Range(*cfg.plateau_beta_range)),
      'sinc': dict(cutoff=Range(*cfg.sinc_cutoff_range)),
  }
  if kernel_type not in table:
    raise ValueError(f'unknown kernel type {kernel_type!r}; expected one of {KERNEL_TYPES}')
  return table[kernel_type]


def sample_kernel_size(rng: np.random.Generator, cfg: Any) -> int:
  """An odd size in cfg.kernel_size_range, uniformly over the odd sizes."""
  low, high = cfg.kernel_size_range
  sizes = np.arange(low + (low + 1) % 2, high + 1, 2)
  if sizes.size == 0:
    raise ValueError(f'kernel_size_range {cfg.kernel_size_range} holds no odd size')
  return int(rng.choice(sizes))


def needs_size(kernel_type: str) -> bool:
  """Motion and defocus kernels size themselves to hold the path or the disk."""
  return kernel_type not in ('motion', 'defocus')


def sample_kernel_params(rng: np.random.Generator, cfg: Any,
                         kernel_type: str | None = None) -> dict[str, Any]:
  """Random parameters for one kernel: type (cfg.kernel_probs), size, values."""
  if kernel_type is None:
    probs = np.asarray(cfg.kernel_probs, np.float64)
    kernel_type = str(rng.choice(list(cfg.kernel_types), p=probs / probs.sum()))
  params: dict[str, Any] = {'type': kernel_type}
  if needs_size(kernel_type):
    params['size'] = sample_kernel_size(rng, cfg)
  for name, r in kernel_param_ranges(kernel_type, cfg).items():
    params[name] = float(rng.uniform(r.low, r.high))
  if 'size' in params:
    params['size'] = fitted_size(params['size'], [params], cfg)
  return params


def fitted_size(size: int, frames: list[Mapping[str, Any]], cfg: Any) -> int:
  """`size`, or with cfg.truncate_kernels False, grown to +-3 sigma of the widest
  Gaussian-family kernel among `frames` (parameter dicts), up to the range's top.

  A Gaussian cut at +-1 sigma by a small square is nearly a box blur, whose inverse
  rings along the pixel axes (docs/results.md).
  """
  sigma = max(max(f.get('sigma_x', 0.0), f.get('sigma_y', 0.0)) for f in frames)
  if not sigma or cfg.get('truncate_kernels', True):
    return size
  top = int(cfg.kernel_size_range[1])
  return min(max(size, 2 * math.ceil(3 * sigma) + 1), top if top % 2 else top - 1)


def make_kernel(params: Mapping[str, Any]) -> np.ndarray:
  """The kernel described by `params` (as sample_kernel_params returns it)."""
  p = dict(params)
  kernel_type = p.pop('type')
  if kernel_type == 'motion':
    return motion_kernel(**p)
  if kernel_type == 'defocus':
    return defocus_kernel(**p)
  if kernel_type == 'gaussian_iso':
    return gaussian_kernel(p['size'], p['sigma_x'])
  if kernel_type == 'gaussian_aniso':
    return gaussian_kernel(**p)
  if kernel_type == 'generalized':
    return generalized_gaussian_kernel(**p)
  if kernel_type == 'plateau':
    return plateau_kernel(**p)
  if kernel_type == 'sinc':
    return sinc_kernel(**p)
  raise ValueError(f'unknown kernel type {kernel_type!r}; expected one of {KERNEL_TYPES}')


def max_kernel_size(cfg: Any) -> int:
  """The smallest odd size that holds every blur kernel `cfg` can draw (1: no blur): the
  side every kernel is zero-padded to when windows are degraded on the device.

  Sized families draw at most cfg.kernel_size_range[1]; defocus needs
  2 ceil(r + 1/2) + 1 (defocus_kernel). A motion path of length L is centred
  on its time average, so no point is farther from the centre than the mean
  arc-length distance to the other time samples, at most L max(E s, 1 - E s) with
  s(t) = t + a (t^2 - t): E s = 1/2 - a (1/6 + 1 / (12 n^2)) over n >= 64 samples.
  (The second round's shrunk ranges are smaller.)
  """
  if cfg.blur_prob <= 0:
    return 1
  used = {t for t, p in zip(cfg.kernel_types, cfg.kernel_probs) if p > 0}
  sizes = [1]
  if used - {'motion', 'defocus'}:
    high = int(cfg.kernel_size_range[1])
    sizes.append(high if high % 2 else high - 1)  # the largest odd size in range
  if 'defocus' in used:
    sizes.append(2 * math.ceil(cfg.defocus_radius_range[1] + 0.5) + 1)
  if 'motion' in used:
    accel = max(abs(a) for a in MOTION_ACCEL_RANGE)
    reach = cfg.motion_length_range[1] * (0.5 + accel * (1 / 6 + 1 / (12 * 64**2)))
    sizes.append(2 * (math.floor(reach + 1e-9) + 1) + 1)
  return max(sizes)
