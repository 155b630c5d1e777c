"""The real-camera effects of camera_effects.py as jittable JAX, for on_device/degradations.degrade.

camera_effects.py (NumPy, on the host) is the reference; the same arithmetic here,
batched, so that windows degraded on the device can have them too:

* `window_arrays` (host): a window's 'low_light' and 'rolling_shutter' parameters
  as fixed-shape arrays, neutral values where an effect is off;
* `rolling_shutter` (device): the row-wise blend of each HR frame with the next
  one (the last with the one before), as camera_effects.rolling_shutter_frames;
  frames a source rendered through the shutter ('rendered') have readout 0 here;
* `low_light` (device): darken, Poisson-Gaussian noise, banding, quantise, lift, as
  camera_effects.low_light. Shot noise is drawn as round(N(lam, lam)) clipped at
  0, as add_noise's Poisson: the same mean and variance (to the 1/12 of rounding)
  without jax.random.poisson's rejection loop; only the skew of counts under ~10
  photo-electrons differs.
Both cost nothing (a lax.cond) when no window of the batch uses them.
"""

from collections.abc import Mapping
from typing import Any

import jax
from jax import lax
import jax.numpy as jnp
import numpy as np

from clarity_jax.data import camera_effects

LOW_LIGHT_ARRAYS = ('low_light', 'low_light_levels', 'low_light_gamma',
                    *(f'low_light_{f}' for f in camera_effects.LOW_LIGHT_FIELDS))


def enabled(cfg: Any) -> bool:
  """Whether a degradation config can draw either effect: only then do windows carry
  their arrays and `degrade` compile them (the default config does neither)."""
  return (getattr(cfg, 'low_light_prob', 0.0) > 0 or
          getattr(cfg, 'rolling_shutter_prob', 0.0) > 0)


def window_arrays(params: Mapping[str, Any], on: bool = True) -> dict[str, np.ndarray]:
  """'low_light' [] f32 (0/1), 'low_light_levels' [] f32 (2^bits - 1), 'low_light_gamma'
  [] f32, 'low_light_<field>' [T] f32 per camera_effects.LOW_LIGHT_FIELDS, and
  'rolling_shutter_readout' [] f32 (0: none, or already rendered); {} if not `on`."""
  n = int(params['num_frames'])
  light, shutter = params.get('low_light'), params.get('rolling_shutter')
  blend = shutter is not None and shutter['method'] == 'blend'
  if not on:
    if light or blend:
      raise ValueError('the window has low light or a rolling shutter: its arrays need '
                       'camera_effects=True (jax_camera_effects.enabled(cfg))')
    return {}
  out = {'low_light': np.asarray(float(bool(light)), np.float32),
         'low_light_levels': np.asarray(2**light['bits'] - 1 if light else 1, np.float32),
         'low_light_gamma': np.asarray(light['gamma'] if light else 1.0, np.float32)}
  for field in camera_effects.LOW_LIGHT_FIELDS:
    values = [f[field] for f in light['frames']] if light else [0.0] * n
    out[f'low_light_{field}'] = np.asarray(values, np.float32)
  out['rolling_shutter_readout'] = np.asarray(shutter['readout'] if blend else 0.0, np.float32)
  return out


def _per_window(v: jax.Array, ndim: int) -> jax.Array:
  return v.reshape(v.shape + (1,) * (ndim - v.ndim))


def rolling_shutter(hr: jax.Array, readout: jax.Array) -> jax.Array:
  """hr [B, T, H, W, 3], readout [B]: row r of frame t at time t + readout r / H.

  x_t + w (x_{t+1} - x_t), w = readout r / H, the last frame x_t + w (x_t - x_{t-1}),
  clipped: camera_effects.rolling_shutter_frames. Windows with readout 0 are untouched.
  """
  h, t = hr.shape[2], hr.shape[1]

  def blend(hr: jax.Array) -> jax.Array:
    w = readout[:, None] * jnp.arange(h, dtype=jnp.float32) / h  # camera_effects.row_times
    following = jnp.concatenate([hr[:, 1:], hr[:, -1:]], axis=1)
    preceding = jnp.concatenate([hr[:, :1], hr[:, :-1]], axis=1)
    last = (jnp.arange(t) == t - 1)[None, :, None, None, None]
    step = jnp.where(last, hr - preceding, following - hr)
    out = jnp.clip(hr + w[:, None, :, None, None] * step, 0.0, 1.0)
    return jnp.where(_per_window(readout, hr.ndim) > 0, out, hr)

  return lax.cond(jnp.any(readout > 0), blend, lambda v: v, hr)


def apply_rolling_shutter(hr: jax.Array, arrays: Mapping[str, jax.Array]) -> jax.Array:
  """hr through rolling_shutter where `arrays` has its readouts (window_arrays' `on`)."""
  if 'rolling_shutter_readout' not in arrays:
    return hr
  return rolling_shutter(hr, arrays['rolling_shutter_readout'])


def apply_low_light(x: jax.Array, arrays: Mapping[str, jax.Array], keys: jax.Array
                    ) -> jax.Array:
  """x through low_light where `arrays` has its values; keys [B]: the windows' own.

  The noise stream of a window is fold_in(key, 2): degradations.degrade's two
  rounds take 0 and 1, so the other noise is the same with the effect or without.
  """
  if not set(LOW_LIGHT_ARRAYS) <= set(arrays):
    return x
  return low_light(x, arrays, jax.vmap(jax.random.fold_in, in_axes=(0, None))(keys, 2))


def low_light(x: jax.Array, arrays: Mapping[str, jax.Array], keys: jax.Array) -> jax.Array:
  """x [B, T, h, w, 3] in [0, 1] through each window's low light (window_arrays'
  'low_light*' stacked), noise from keys [B]; windows without it are untouched."""
  on = _per_window(arrays['low_light'], x.ndim) > 0.5
  value = {f: _per_window(arrays[f'low_light_{f}'], x.ndim)
           for f in camera_effects.LOW_LIGHT_FIELDS}
  t, h, w = x.shape[1:4]

  def normal(i: int, shape: tuple[int, ...]) -> jax.Array:
    return jax.vmap(lambda k: jax.random.normal(jax.random.fold_in(k, i), shape))(keys)

  def dark(x: jax.Array) -> jax.Array:
    signal = value['exposure'] * jnp.clip(x, 0.0, 1.0) ** camera_effects.DISPLAY_GAMMA
    gain = value['shot_gain']
    lam = jnp.where(gain > 0, signal / jnp.where(gain > 0, gain, 1.0), 0.0)
    counts = jnp.maximum(jnp.round(lam + jnp.sqrt(lam) * normal(0, x.shape[1:])), 0.0)
    noisy = jnp.where(gain > 0, gain * counts, signal)
    noisy = noisy + value['read_sigma'] * normal(1, x.shape[1:])
    noisy = noisy + value['row_sigma'] * normal(2, (t, h, 1, 1))  # banding, shared by R, G, B
    noisy = noisy + value['col_sigma'] * normal(3, (t, 1, w, 1))
    levels = _per_window(arrays['low_light_levels'], x.ndim)
    q = jnp.round(jnp.clip(noisy, 0.0, 1.0) * levels) / levels
    gamma = _per_window(arrays['low_light_gamma'], x.ndim)
    return jnp.where(on, q ** (1.0 / (camera_effects.DISPLAY_GAMMA * gamma)), x)

  return lax.cond(jnp.any(on), dark, lambda v: v, x)
