"""Real-camera effects on the device (data/on_device/camera_effects.py) against camera_effects.py.

The rolling shutter and low light without noise must equal the reference to float
precision; low light's noise is random, so its statistics are checked instead.
"""

import math

import jax
import numpy as np
import pytest

from clarity_jax.data import camera_effects as C
from clarity_jax.data import degradations as D
from clarity_jax.data.on_device import camera_effects as JC
from clarity_jax.data.on_device import degradations as J

_SHUTTER = jax.jit(JC.rolling_shutter)
_LOW_LIGHT = jax.jit(JC.low_light)


def _stack(windows: list[dict]) -> dict[str, np.ndarray]:
  return {k: np.stack([w[k] for w in windows]) for k in windows[0]}


def _light(t: int, exposure: float, gain: float, read: float, row: float = 0.0,
           col: float = 0.0, bits: int = 12, gamma: float = 1.5) -> dict:
  frame = {'exposure': exposure, 'shot_gain': gain, 'read_sigma': read, 'row_sigma': row,
           'col_sigma': col}
  return {'bits': bits, 'gamma': gamma, 'frames': [frame] * t}


def _params(t: int, light: dict | None = None, shutter: dict | None = None) -> dict:
  return {'num_frames': t, 'low_light': light, 'rolling_shutter': shutter}


def test_window_arrays_have_fixed_shapes_and_neutral_values_when_off(degradation_cfg):
  cfg = degradation_cfg(low_light_prob=0.5, rolling_shutter_prob=0.5)
  rng = np.random.default_rng(0)
  params = [D.sample_window_params(rng, cfg, 4, 2) for _ in range(12)]
  params.append(dict(params[0], rolling_shutter={'readout': 0.5, 'method': 'rendered'}))
  arrays = [JC.window_arrays(p) for p in params]
  shapes = {k: (v.shape, v.dtype) for k, v in arrays[0].items()}
  assert all({k: (v.shape, v.dtype) for k, v in a.items()} == shapes for a in arrays)
  assert set(JC.LOW_LIGHT_ARRAYS) | {'rolling_shutter_readout'} == set(shapes)
  for p, a in zip(params, arrays):
    light, shutter = p['low_light'], p['rolling_shutter']
    assert a['low_light'] == float(light is not None)
    if light:
      assert a['low_light_levels'] == 2**light['bits'] - 1
      np.testing.assert_allclose(a['low_light_gamma'], light['gamma'], rtol=1e-6)
      np.testing.assert_allclose(a['low_light_exposure'],
                                 [f['exposure'] for f in light['frames']], rtol=1e-6)
    else:
      assert not a['low_light_shot_gain'].any() and a['low_light_levels'] == 1
    blend = shutter is not None and shutter['method'] == 'blend'
    np.testing.assert_allclose(a['rolling_shutter_readout'], shutter['readout'] if blend else 0,
                               rtol=1e-6)
  assert {a['low_light'].item() for a in arrays} == {0.0, 1.0}  # both kinds were checked
  assert a['rolling_shutter_readout'] == 0  # rendered: nothing left to do
  assert set(JC.window_arrays(params[0])) <= set(J.window_arrays(params[0], kernel_size=29,
                                                                 camera_effects=True))
  # Off (the default config): windows carry no such arrays, degrade compiles none.
  assert JC.enabled(cfg) and not JC.enabled(degradation_cfg())
  plain = D.sample_window_params(rng, degradation_cfg(), 4, 2)
  assert not set(JC.window_arrays(plain)) & set(J.window_arrays(plain, kernel_size=29))
  lit = next(p for p in params if p['low_light'])
  with pytest.raises(ValueError, match='camera_effects=True'):
    J.window_arrays(lit, kernel_size=29)


def test_rolling_shutter_equals_the_reference(photo):
  hr = np.stack([np.stack([photo[40 * b + 3 * t:40 * b + 3 * t + 24, 5 * t:5 * t + 20]
                           for t in range(4)]) for b in range(3)])
  readout = np.array([0.3, 0.0, 0.9], np.float32)
  out = np.asarray(_SHUTTER(hr, readout))
  for b, r in enumerate(readout):
    shutter = {'readout': float(r), 'method': 'blend'} if r else None
    np.testing.assert_allclose(out[b], C.rolling_shutter(hr[b], shutter), atol=1e-6)
  np.testing.assert_array_equal(out[1], hr[1])
  one = np.asarray(_SHUTTER(hr[:, :1], readout))  # a single frame has nothing to blend with
  np.testing.assert_allclose(one, hr[:, :1], atol=1e-7)


def test_low_light_without_noise_equals_the_reference(photo):
  """Darken, quantise and lift are deterministic: the same values as NumPy (but where
  a float32 rounding lands a pixel on the other side of a quantisation step)."""
  lights = [_light(3, 0.1, 0.0, 0.0, bits=8, gamma=1.0), None,
            _light(3, 0.03, 0.0, 0.0, bits=10, gamma=2.0)]
  x = np.stack([photo[100 * b:100 * b + 16, 200:232].reshape(1, 16, 32, 3).repeat(3, 0)
                for b in range(3)])
  arrays = _stack([JC.window_arrays(_params(3, light)) for light in lights])
  out = np.asarray(_LOW_LIGHT(x, arrays, J.example_keys(0, np.arange(3))))
  np.testing.assert_array_equal(out[1], x[1])
  for b in (0, 2):
    ref = np.stack([C.apply_low_light(x[b, t], lights[b], t, np.random.default_rng(0))
                    for t in range(3)])
    close = np.isclose(out[b], ref, atol=1e-5)
    assert close.mean() > 0.999, close.mean()
    levels = 2**lights[b]['bits'] - 1
    step = np.abs(out[b] ** (2.2 * lights[b]['gamma']) - ref ** (2.2 * lights[b]['gamma']))
    assert np.all(step[~close] < 1.01 / levels)  # one quantisation step at most


def test_low_light_noise_has_the_reference_statistics():
  """a S + b variance per level, banding variance of row means, as the NumPy tests;
  windows keyed apart get different noise, the same key the same."""
  exposure, gain, read, row = 0.25, 1e-3, 2e-3, 3e-3
  signal = np.array([0.02, 0.05, 0.1, 0.2])
  x = np.broadcast_to(((signal / exposure) ** (1 / 2.2))[None, :, None, None, None],
                      (2, 4, 256, 64, 3)).astype(np.float32)
  lights = [_light(4, exposure, gain, read, bits=16), _light(4, exposure, gain, read, row, bits=16)]
  arrays = _stack([JC.window_arrays(_params(4, light)) for light in lights])
  keys = J.example_keys(3, np.arange(2))
  out = np.asarray(_LOW_LIGHT(x, arrays, keys))
  linear = out.astype(np.float64) ** (2.2 * 1.5)
  s = exposure * x[0, :, 0, 0, 0].astype(np.float64) ** 2.2
  for t in range(4):
    expected = gain * s[t] + read**2
    assert abs(linear[0, t].mean() - s[t]) < 4 * math.sqrt(expected / linear[0, t].size)
    assert linear[0, t].var() == pytest.approx(expected, rel=0.05), t
  rows = linear[1].mean(axis=(2, 3))  # [T, H]
  pixel = gain * s[:, None] + read**2
  extra = ((rows - rows.mean(axis=1, keepdims=True)).var(axis=1) * 256 / 255
           - pixel[:, 0] / (64 * 3))
  assert extra.mean() == pytest.approx(row**2, rel=0.12)  # 1024 rows
  np.testing.assert_array_equal(np.asarray(_LOW_LIGHT(x, arrays, keys)), out)
  assert not np.allclose(out[0], out[1], atol=1e-3)


def test_degrade_applies_both_effects_as_apply_window(photo, degradation_cfg):
  """Whole windows: shutter -> blur -> downsample -> low light (noise off) -> JPEG off,
  on the device as on the host; windows without the effects are unchanged."""
  silent = {f'low_light_{f}_range': (0.0, 0.0) for f in C.LOW_LIGHT_FIELDS if f != 'exposure'}
  cfg = degradation_cfg(low_light_prob=1.0, rolling_shutter_prob=1.0, jpeg_prob=0.0,
                        video_codec_prob=0.0, **silent)
  rng = np.random.default_rng(1)
  params = [D.sample_window_params(rng, cfg, 3, 2) for _ in range(2)]
  quiet = degradation_cfg(noise_prob=0.0, jpeg_prob=0.0, video_codec_prob=0.0)
  params.append(D.sample_window_params(rng, quiet, 3, 2))
  hr = np.stack([np.stack([photo[50 * b + 4 * t:50 * b + 4 * t + 32, 100:132]
                           for t in range(3)]) for b in range(3)])
  size = max(J.max_kernel_size(cfg), 1)
  arrays = _stack([J.window_arrays(p, kernel_size=size, camera_effects=True) for p in params])
  out = np.asarray(jax.jit(J.degrade, static_argnums=3)(hr, arrays,
                                                        J.example_keys(0, np.arange(3)), 2))
  for b, p in enumerate(params):
    ref = D.apply_window(hr[b], p, 2, np.random.default_rng(0))
    close = np.isclose(out[b], ref, atol=1e-4)
    assert close.mean() > 0.995, (b, close.mean())
  assert params[2]['low_light'] is None and params[2]['rolling_shutter'] is None
