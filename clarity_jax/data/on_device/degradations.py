"""Eq. (1) without the video codec, as jittable JAX on whole batches: degradation on device.

degradations.py (NumPy/OpenCV, on the host) is the reference and stays the
definition; this is the same per-frame arithmetic, batched, so that training on
accelerators need not degrade windows on the CPU:

* on the host, `window_arrays` turns one window's parameters (as
  degradations.sample_window_params draws them, drift included) into fixed-shape
  arrays: every window of every batch has the same shapes, so batches stack and
  `degrade` compiles once;
* on the device, `degrade` applies them to a batch [B, T, H, W, 3] in
  apply_window's order: [rolling shutter ->] blur -> downsample -> clip -> [low
  light ->] noise -> JPEG [-> second round: blur -> clip -> noise -> JPEG] -> clip
  (bracketed: the real-camera effects, data/on_device/camera_effects.py). Frame t gets frame
  t's values; the noise comes from one key per window (`example_keys`), so it
  depends on (seed, example index) only.

Static shapes: every window pays for every stage a window of the batch uses.
* blur: each frame with its kernel zero-padded to `kernel_size` (a delta when
  the window has no blur), by FFT (cost independent of kernel_size) or, on TPUs,
  one grouped convolution (kernel_size^2 multiply-adds per HR pixel and channel);
* downsample: the window's mode only selects taps from one table of all modes on
  one anchor ('area' is s taps of 1/s among zeros): ONE separable strided
  filtering, never three candidates, L / s + L / s^2 multiply-adds per HR pixel
  and channel (L = 8 taps at x2, 16 at x4: the bicubic support);
* Poisson noise, JPEG and the second round run under a lax.cond, skipped when no
  window of the batch uses them, else computed for the whole batch and kept by a
  jnp.where where asked.
No matmul-like op runs at default precision: XLA:GPU would compute float32 in
TF32 (10-bit mantissa), TPUs in bfloat16 passes, ~1e-3 away from the reference.
"""

from collections.abc import Mapping
import functools
from typing import Any

import jax
from jax import lax
import jax.numpy as jnp
import numpy as np

from clarity_jax.data import degradation_config
from clarity_jax.data import degradations
from clarity_jax.data.on_device import camera_effects as jax_camera_effects
from clarity_jax.data.on_device import jpeg as jax_jpeg
from clarity_jax.data import kernels

_NOISE_KINDS = {'gaussian': 1, 'poisson': 2}  # 0: no noise
# The per-round arrays, named as in window_arrays (the second round prefixed 'second_').
_ROUND_FIELDS = ('blur_kernel', 'noise_kind', 'noise_gray', 'noise_level', 'jpeg_quality')
_LUMA = degradations._LUMA  # pylint: disable=protected-access  (BT.601, the reference's)


# Kernel geometry lives with the kernels; re-exported for the device path's callers.
max_kernel_size = kernels.max_kernel_size


# What the default degradation config needs (29: motion blur of length 21 at accel 0.8).
KERNEL_SIZE = max_kernel_size(degradation_config.get_config())


# ------------------------------------------------------------------ on the host


def _blur_kernels(blur_params: dict | None, n: int, size: int, name: str) -> np.ndarray:
  """[n, size, size]: each frame's kernel in the centre of a zero frame (a delta: no blur).

  Centred zero padding keeps the kernel's centre on the centre tap, and zero taps
  add nothing, so the padded kernel blurs exactly as the original one.
  """
  out = np.zeros((n, size, size), np.float32)
  if blur_params is None:
    out[:, size // 2, size // 2] = 1.0
    return out
  for t in range(n):
    k = degradations.frame_kernel(blur_params, t)
    if k.shape[0] > size or k.shape[1] > size:
      raise ValueError(f'{name} kernel of frame {t} ({blur_params["type"]}) is '
                       f'{k.shape[0]}x{k.shape[1]}, larger than kernel_size {size}; '
                       f'use max_kernel_size(cfg)')
    a, b = (size - k.shape[0]) // 2, (size - k.shape[1]) // 2
    out[t, a:a + k.shape[0], b:b + k.shape[1]] = k
  return out


def _round_arrays(blur: dict | None, noise: dict | None, jpeg: dict | None, n: int,
                  size: int, name: str) -> dict[str, np.ndarray]:
  kind, gray, level = 0, 0.0, np.zeros(n, np.float32)
  if noise is not None:
    kind, gray = _NOISE_KINDS[noise['type']], float(noise['gray'])
    level = np.asarray([f['scale'] if kind == 2 else f['sigma255'] / 255.0
                        for f in noise['frames']], np.float32)
  quality = np.zeros(n, np.int32)
  if jpeg is not None:
    quality = np.asarray([f['quality'] for f in jpeg['frames']], np.int32)
    if quality.min() < 1 or quality.max() > 100:
      raise ValueError(f'{name} JPEG qualities must be in 1..100, got {quality.tolist()}')
  return {'blur_kernel': _blur_kernels(blur, n, size, f'{name} blur'),
          'noise_kind': np.asarray(kind, np.int32), 'noise_gray': np.asarray(gray, np.float32),
          'noise_level': level, 'jpeg_quality': quality}


def window_arrays(params: Mapping[str, Any], *, kernel_size: int,
                  camera_effects: bool = False) -> dict[str, np.ndarray]:
  """One window's parameters (degradations.sample_window_params) -> fixed-shape arrays.

  NumPy, on the host. Every window gives the same shapes (kernels zero-padded,
  centred, to kernel_size; stages that are off are neutral values), so batches
  stack and `degrade` compiles once:
    'blur_kernel' [T, K, K] f32 (a delta: no blur), 'resize' [] i32 (index into
    degradations.RESIZE_MODES), 'noise_kind' [] i32 (0 none, 1 gaussian, 2 poisson),
    'noise_gray' [] f32, 'noise_level' [T] f32 (sigma in [0, 1] units or the Poisson
    scale), 'jpeg_quality' [T] i32 (0: no JPEG); the same five prefixed 'second_'
    for the second round (blur at LQ resolution), 'second_round' [] f32 (0/1); and
    with camera_effects, jax_camera_effects.window_arrays (else not compiled).
  The video codec is not here: it stays on the host (degradations.compress_window).

  Raises:
    ValueError: kernel_size is not odd and positive, a kernel is larger than it,
      a parameter is out of its domain, or a camera effect is on without camera_effects.
  """
  if kernel_size < 1 or kernel_size % 2 == 0:
    raise ValueError(f'kernel_size must be odd and positive, got {kernel_size}')
  n = int(params['num_frames'])
  if params['resize'] not in degradations.RESIZE_MODES:
    raise ValueError(f'unknown resize mode {params["resize"]!r}; expected one of '
                     f'{degradations.RESIZE_MODES}')
  out = _round_arrays(params['blur'], params['noise'], params['jpeg'], n, kernel_size,
                      'first-round')
  out['resize'] = np.asarray(degradations.RESIZE_MODES.index(params['resize']), np.int32)
  second = params['second_round'] or {}
  second_arrays = _round_arrays(second.get('blur'), second.get('noise'), second.get('jpeg'),
                                n, kernel_size, 'second-round')
  out.update({'second_' + k: v for k, v in second_arrays.items()})
  out['second_round'] = np.asarray(float(bool(params['second_round'])), np.float32)
  out.update(jax_camera_effects.window_arrays(params, camera_effects))
  return out


@functools.lru_cache(maxsize=None)
def resize_taps(scale: int) -> tuple[np.ndarray, int]:
  """[len(RESIZE_MODES), L] taps of every mode on one common anchor, for a reduction by scale.

  Output pixel i reads input i s + m - anchor, m = 0..L-1: the bicubic and
  bilinear taps of degradations.antialias_taps and the s x s box of 'area' (taps
  of 1/s at m - anchor = 0..s-1), zero elsewhere.
  """
  taps = {mode: degradations.antialias_taps(scale, mode)
          for mode in degradations.RESIZE_MODES if mode != 'area'}
  taps['area'] = (np.full(scale, 1.0 / scale, np.float32), 0)
  anchor = max(a for _, a in taps.values())
  length = max(anchor - a + len(w) for w, a in taps.values())
  table = np.zeros((len(degradations.RESIZE_MODES), length), np.float32)
  for i, mode in enumerate(degradations.RESIZE_MODES):
    w, a = taps[mode]
    table[i, anchor - a:anchor - a + len(w)] = w
  return table, anchor


# ------------------------------------------------------------------ on the device


def _fft_size(n: int) -> int:
  """The smallest 2^a 3^b 5^c >= n (n < 2^20): sizes FFT libraries transform fastest."""
  return min(m for m in (2**a * 3**b * 5**c for a in range(21) for b in range(13)
                         for c in range(9)) if m >= n)


def _blur_fft(x: jax.Array, kernel: jax.Array) -> jax.Array:
  """blur() by FFT: the product of transforms is a true (circular) convolution.

  The kernel's centre goes to index (0, 0); on the padded frame, outputs r..r+H-1
  read only inputs 0..H+2r-1, so the circular wrap never reaches them and zero
  padding up to a fast FFT size changes nothing.
  """
  (h, w), k, r = x.shape[1:3], kernel.shape[-1], kernel.shape[-1] // 2
  p, q = _fft_size(h + 2 * r), _fft_size(w + 2 * r)
  x = jnp.moveaxis(jnp.pad(x, ((0, 0), (r, r), (r, r), (0, 0)), mode='reflect'), -1, 1)
  kernel = jnp.roll(jnp.pad(kernel, ((0, 0), (0, p - k), (0, q - k))), (-r, -r), axis=(1, 2))
  spectrum = jnp.fft.rfft2(x, s=(p, q)) * jnp.fft.rfft2(kernel)[:, None]
  y = jnp.fft.irfft2(spectrum, s=(p, q))[:, :, r:r + h, r:r + w]
  return jnp.moveaxis(y, 1, -1)


def blur(x: jax.Array, kernel: jax.Array, method: str = 'auto') -> jax.Array:
  """x [N, H, W, C] convolved with kernel [N, K, K] (K odd), frame by frame: degradations.blur.

  A true convolution (degradations.blur flips the kernel for cv2.filter2D's
  correlation; so does 'conv' here, the FFT needs no flip), border reflect-101
  (cv2.BORDER_REFLECT_101, jnp.pad's 'reflect'; it reflects again when K / 2
  exceeds the image).

  method: 'fft' costs O(log HW) per pixel whatever K; 'conv' (one grouped
  convolution, Precision.HIGHEST) K^2, and XLA:CPU runs grouped convolutions
  slowly. 'auto' is 'conv' on TPUs, whose FFT computes in bfloat16 passes
  that no precision setting raises (jax issue 9881: ~1e-3 off), 'fft' elsewhere.
  """
  x, kernel = x.astype(jnp.float32), kernel.astype(jnp.float32)
  if method == 'auto':
    method = 'conv' if jax.default_backend() == 'tpu' else 'fft'
  if method == 'fft':
    return _blur_fft(x, kernel)
  if method != 'conv':
    raise ValueError(f"unknown blur method {method!r}; expected 'auto', 'fft' or 'conv'")
  # One grouped convolution for the batch: frames are the feature groups and the
  # colour channels the batch, so the channels of a frame share its kernel uncopied.
  r = kernel.shape[-1] // 2
  x = jnp.pad(x, ((0, 0), (r, r), (r, r), (0, 0)), mode='reflect')
  return lax.conv_general_dilated(
      x, kernel[:, None, ::-1, ::-1], (1, 1), 'VALID',
      dimension_numbers=('CHWN', 'OIHW', 'CHWN'), feature_group_count=x.shape[0],
      precision=lax.Precision.HIGHEST)


def _strided_taps(x: jax.Array, taps: jax.Array, axis: int, scale: int) -> jax.Array:
  """out[i] = sum_m taps[n, m] x[n, i s + m] along `axis` of x [N, ...], VALID.

  Written out as L strided slices, multiplied and added (a grouped strided
  convolution would do): XLA fuses them into one elementwise loop, exact float32
  on every backend (no TF32 or bfloat16 passes), and faster than
  lax.conv_general_dilated's grouped convolution on XLA:CPU.
  """
  length = taps.shape[1]
  size = x.shape[axis] - length + 1
  out = jnp.zeros((), jnp.float32)
  for m in range(length):  # static: L <= 16 taps, not a loop over frames
    tap = taps[:, m].reshape((-1,) + (1,) * (x.ndim - 1))
    out = out + tap * lax.slice_in_dim(x, m, m + size, stride=scale, axis=axis)
  return out


def downsample(x: jax.Array, resize: jax.Array, scale: int) -> jax.Array:
  """x [N, H, W, C] -> [N, H/s, W/s, C], frame n by mode resize[n]: degradations.downsample.

  The taps of the frame's mode (resize_taps) along rows, then columns, strided by
  s at the reference's phase; border cv2.BORDER_REFLECT (jnp.pad's 'symmetric').
  """
  h, w = x.shape[1:3]
  if scale < 1 or h % scale or w % scale:
    raise ValueError(f'cannot downsample {h}x{w} by {scale}: sizes must be multiples of it')
  x = x.astype(jnp.float32)
  if scale == 1:
    return x
  table, anchor = resize_taps(scale)
  taps = jnp.take(jnp.asarray(table), resize, axis=0, mode='clip')  # [N, L]
  pad = (anchor, table.shape[1] - 1 - anchor)
  x = jnp.pad(x, ((0, 0), pad, pad, (0, 0)), mode='symmetric')
  return _strided_taps(_strided_taps(x, taps, 1, scale), taps, 2, scale)


def _per_window(v: jax.Array, ndim: int) -> jax.Array:
  """[B] or [B, T] values shaped to broadcast against [B, T, h, w, 3]."""
  return v.reshape(v.shape + (1,) * (ndim - v.ndim))


def add_noise(x: jax.Array, kind: jax.Array, gray: jax.Array, level: jax.Array,
              keys: jax.Array) -> jax.Array:
  """x [B, T, h, w, 3] in [0, 1] plus each window's noise, clipped (untouched if kind 0).

  kind [B] (0 none, 1 gaussian, 2 poisson), gray [B] (one value for R, G, B),
  level [B, T] (sigma, or the Poisson scale), keys [B]. As degradations.
  gaussian_noise: x + N(0, sigma^2); as poisson_noise: x + scale (Poisson(c P) / P
  - c), c = clip(x) or its BT.601 luma, P = POISSON_PEAK.
  """
  kind, level = _per_window(kind, x.ndim), _per_window(level, x.ndim)
  gray = _per_window(gray, x.ndim) > 0.5
  sample_shape = x.shape[1:]

  def one_or_three(n: jax.Array) -> jax.Array:
    # Gray noise: the first channel's draw for all three (the reference's [..., 1] noise).
    return jnp.where(gray, n[..., :1], n)

  gaussian = jax.vmap(lambda k: jax.random.normal(jax.random.fold_in(k, 0), sample_shape))
  noisy = x + level * one_or_three(gaussian(keys))

  def poisson(noisy: jax.Array) -> jax.Array:
    luma = jnp.sum(x * _LUMA, axis=-1, keepdims=True)  # elementwise: exact float32
    c = jnp.clip(jnp.where(gray, luma, x), 0.0, 1.0)
    lam = jnp.where(kind == 2, c * degradations.POISSON_PEAK, 0.0)
    # Photon counts drawn as round(N(lam, lam)), clipped at 0, not by
    # jax.random.poisson: that is a rejection loop, which dominated a CPU batch
    # and serialises on accelerators. The counts keep the Poisson's
    # mean and variance (to the 1/12 of rounding) and stay integers; only the skew
    # of the darkest pixels (lam < ~10, under 4 % of white) differs.
    z = jax.vmap(lambda k: jax.random.normal(jax.random.fold_in(k, 1), sample_shape))(keys)
    counts = jnp.maximum(jnp.round(lam + jnp.sqrt(lam) * z), 0.0)
    shot = x + level * (one_or_three(counts.astype(jnp.float32)) /
                        degradations.POISSON_PEAK - c)
    return jnp.where(kind == 2, shot, noisy)

  # Skipped when no window of the batch asks for shot noise.
  noisy = lax.cond(jnp.any(kind == 2), poisson, lambda v: v, noisy)
  return jnp.where(kind == 0, x, jnp.clip(noisy, 0.0, 1.0))


def _jpeg(x: jax.Array, quality: jax.Array) -> jax.Array:
  """jax_jpeg.jpeg at quality [B, T] per frame; 0 leaves a frame as it is."""
  on = quality > 0

  def compress(x: jax.Array) -> jax.Array:
    y = jax_jpeg.jpeg(x, jnp.maximum(quality, 1))
    return jnp.where(_per_window(on, x.ndim), y, x)

  return lax.cond(jnp.any(on), compress, lambda v: v, x)


def _blur_frames(x: jax.Array, kernel: jax.Array, method: str) -> jax.Array:
  b, t = x.shape[:2]
  return blur(x.reshape((b * t,) + x.shape[2:]), kernel.reshape((b * t,) + kernel.shape[2:]),
              method).reshape(x.shape)


def _check(hr: jax.Array, arrays: Mapping[str, jax.Array], keys: jax.Array,
           scale: int) -> None:
  if hr.ndim != 5 or hr.shape[-1] != 3:
    raise ValueError(f'expected HR windows [B, T, H, W, 3], got shape {hr.shape}')
  b, t, h, w, _ = hr.shape
  if scale < 1 or h % scale or w % scale:
    raise ValueError(f'HR size {h}x{w} is not a multiple of scale {scale}')
  missing = {'resize', 'second_round', *_ROUND_FIELDS,
             *('second_' + f for f in _ROUND_FIELDS)} - set(arrays)
  if missing:
    raise ValueError(f'degradation arrays lack {sorted(missing)} (see window_arrays)')
  for name in ('blur_kernel', 'second_blur_kernel'):
    shape = arrays[name].shape
    if len(shape) != 4 or shape[:2] != (b, t) or shape[2] != shape[3] or shape[2] % 2 == 0:
      raise ValueError(f'{name} must be [{b}, {t}, K, K] with K odd, got {shape}')
  if keys.shape[0] != b:
    raise ValueError(f'expected {b} keys (one per window), got shape {keys.shape}')


def degrade(hr: jax.Array, arrays: Mapping[str, jax.Array], keys: jax.Array,
            scale: int, *, blur_method: str = 'auto') -> jax.Array:
  """HR windows -> LQ windows: eq. (1) but the video codec, on the device.

  Args:
    hr: [B, T, H, W, 3] float in [0, 1], H and W multiples of scale.
    arrays: window_arrays of the B windows, stacked on a leading axis.
    keys: [B] jax.random keys, one per window (example_keys); raw uint32 key
      data [B, 2] is accepted too.
    scale: the (static) downsampling factor.
    blur_method: how `blur` convolves ('auto', 'fft', 'conv'; static).

  Returns:
    [B, T, H/s, W/s, 3] float32 in [0, 1], as degradations.apply_window without
    the codec: [rolling shutter ->] blur -> downsample -> clip -> [low light ->]
    noise -> JPEG [-> blur -> clip -> noise -> JPEG] -> clip; the effects where
    `arrays` has their keys. Jittable, static shapes; windows never interact.
  """
  if not jnp.issubdtype(keys.dtype, jax.dtypes.prng_key):
    keys = jax.random.wrap_key_data(keys)
  _check(hr, arrays, keys, scale)
  b, t, h, w, _ = hr.shape
  first, second = (jax.vmap(jax.random.fold_in, in_axes=(0, None))(keys, i) for i in (0, 1))
  x = jax_camera_effects.apply_rolling_shutter(hr.astype(jnp.float32), arrays)
  x = _blur_frames(x, arrays['blur_kernel'], blur_method)
  x = downsample(x.reshape(b * t, h, w, 3), jnp.repeat(arrays['resize'], t), scale)
  x = jnp.clip(x, 0.0, 1.0).reshape(b, t, h // scale, w // scale, 3)
  x = jax_camera_effects.apply_low_light(x, arrays, keys)
  x = add_noise(x, arrays['noise_kind'], arrays['noise_gray'], arrays['noise_level'], first)
  x = _jpeg(x, arrays['jpeg_quality'])

  def second_round(x: jax.Array) -> jax.Array:
    y = jnp.clip(_blur_frames(x, arrays['second_blur_kernel'], blur_method), 0.0, 1.0)
    y = add_noise(y, arrays['second_noise_kind'], arrays['second_noise_gray'],
                  arrays['second_noise_level'], second)
    y = _jpeg(y, arrays['second_jpeg_quality'])
    return jnp.where(_per_window(arrays['second_round'], x.ndim) > 0.5, y, x)

  # The second round (off by default) costs nothing when no window of the batch has one.
  x = lax.cond(jnp.any(arrays['second_round'] > 0.5), second_round, lambda v: v, x)
  return jnp.clip(x, 0.0, 1.0)


def example_keys(seed: int | jax.Array, index: jax.Array) -> jax.Array:
  """[B] keys from global example indices: fold_in(key(seed), index).

  An example's noise depends on (seed, index) only, not on the batch it lands in
  or the device that degrades it: deterministic, resumable, the same on 1 or 8
  devices.
  """
  base = jax.random.key(seed)
  index = jnp.asarray(index).astype(jnp.uint32)
  return jax.vmap(jax.random.fold_in, in_axes=(None, 0))(base, index)
