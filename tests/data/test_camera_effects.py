"""Real-camera effects (camera_effects.py): the rolling shutter's shear, exact and
approximated; low light's noise variance, banding and quantisation; both off by default."""

import json
import math

import numpy as np
import pytest

from clarity_jax.data import camera_effects as C
from clarity_jax.data import degradations as D
from clarity_jax.data import source_base
from clarity_jax.data import synthetic

PAN = 8.0  # px per frame, the camera moving right: the scene moves left
CROP = 96


def _still(velocity) -> synthetic.SmoothPath:
  """A straight path: offset 0, constant velocity, no shake."""
  d = len(velocity)
  return synthetic.SmoothPath(offset=np.zeros(d), velocity=np.asarray(velocity, np.float64),
                              amp=np.zeros((1, d)), freq=np.ones((1, d)),
                              phase=np.zeros((1, d)), length=30)


def _pan_shot() -> tuple[synthetic.SyntheticSource, synthetic.Shot]:
  """A horizontal pan over a straight vertical edge (a smooth step, dark to light),
  at PAN px per frame; the object is parked far out of view."""
  xs = np.arange(400, dtype=np.float64)
  row = 0.2 + 0.6 / (1.0 + np.exp(-(xs - 200.0) / 3.0))
  photo = np.repeat(np.repeat(row[None, :, None], 300, axis=0), 3, axis=2).astype(np.float32)
  far = synthetic.SmoothPath(offset=np.array([1e4, 1e4, 0.0]), velocity=np.zeros(3),
                             amp=np.zeros((1, 3)), freq=np.ones((1, 3)),
                             phase=np.zeros((1, 3)), length=30)
  motion = synthetic.Motion(pan=_still([PAN, 0.0]), turn=_still([0.0, 0.0]), zoom_min=0.0,
                            zoom_base=0.0, crop=CROP, placement=np.array([192.0, 100.0]),
                            obj_path=far)
  times = np.arange(4) - 1.0
  shot = synthetic.Shot(photo=photo, views=motion.views(times), texture=photo,
                        tex_centre=np.array([20.0, 20.0]), axes=np.array([5.0, 5.0]),
                        obj=motion.objects(times), times=times, motion=motion)
  return synthetic.SyntheticSource({'edge': photo}, source_base.WindowSpec(4, CROP), 30), shot


def _edge_per_row(frame: np.ndarray) -> np.ndarray:
  """Sub-pixel edge position of every row: the centroid of the horizontal gradient."""
  g = np.diff(frame.mean(axis=-1).astype(np.float64), axis=1)
  x = np.arange(g.shape[1]) + 0.5
  return (g * x).sum(axis=1) / g.sum(axis=1)


@pytest.mark.parametrize('method', ['rendered', 'blend'])
def test_rolling_shutter_shears_a_pan_by_the_expected_slope(method):
  """Row r read readout r / H frame intervals late sees the edge moved by that share
  of the pan: x(r) = x(0) - PAN readout r / H, a straight line of slope -PAN readout / H.

  'rendered': the synthetic camera's exact renderer (OpenCV's bicubic moves a
  smooth edge by up to 0.05 px with the sub-pixel phase, hence the row tolerance);
  'blend': the approximation for real footage, whose gradient centroid is exact
  (the last frame extrapolates from the one before)."""
  src, shot = _pan_shot()
  readout = 0.75
  still = src.render(shot)
  edges = np.stack([_edge_per_row(f) for f in still])
  np.testing.assert_allclose(edges, edges[:, :1] + 0 * edges, atol=1e-6)  # straight edges
  np.testing.assert_allclose(np.diff(edges[:, 0]), -PAN, atol=0.01)  # the pan's speed
  if method == 'rendered':
    captured = src.render(shot, readout)
  else:
    captured = C.rolling_shutter(still, {'readout': readout, 'method': 'blend'})
  expected = -PAN * readout / CROP
  rows = np.arange(CROP)
  for t, frame in enumerate(captured):
    edge = _edge_per_row(frame)
    slope, start = np.polyfit(rows, edge, 1)
    assert slope == pytest.approx(expected, rel=0.01 if method == 'rendered' else 1e-3), t
    assert abs(start - edges[t, 0]) < 0.06  # row 0 is read at the frame's time
    np.testing.assert_allclose(edge, edges[t, 0] + expected * rows,
                               atol=0.06 if method == 'rendered' else 2e-3)


def test_rolling_shutter_streams_and_leaves_rendered_frames_alone():
  rng = np.random.default_rng(0)
  hr = rng.uniform(0.2, 0.8, (3, 8, 6, 3)).astype(np.float32)
  shutter = {'readout': 0.5, 'method': 'blend'}
  out = C.rolling_shutter(hr, shutter)
  w = (0.5 * np.arange(8) / 8)[:, None, None]
  np.testing.assert_allclose(out[0], hr[0] + w * (hr[1] - hr[0]), atol=1e-6)
  np.testing.assert_allclose(out[2], hr[2] + w * (hr[2] - hr[1]), atol=1e-6)  # extrapolated
  np.testing.assert_array_equal(out[:, 0], hr[:, 0])  # the first row: the frame's time
  streamed = list(C.rolling_shutter_frames(iter(hr), shutter))
  np.testing.assert_array_equal(np.stack(streamed), out)
  assert C.rolling_shutter(hr, dict(shutter, method='rendered')) is hr
  np.testing.assert_array_equal(C.rolling_shutter(hr[:1], shutter), hr[:1])  # one frame
  with pytest.raises(ValueError, match='unknown rolling shutter method'):
    list(C.rolling_shutter_frames(hr, dict(shutter, method='flow')))


# ------------------------------------------------------------------------ low light

# Fixed low light (degenerate ranges: no drift): exposure, a, sqrt(b), no banding.
_EXPOSURE, _GAIN, _READ = 0.25, 1e-3, 2e-3
_LIGHT = {'low_light_prob': 1.0, 'low_light_exposure_range': (_EXPOSURE, _EXPOSURE),
          'low_light_shot_gain_range': (_GAIN, _GAIN), 'low_light_read_sigma_range': (_READ, _READ),
          'low_light_row_sigma_range': (0.0, 0.0), 'low_light_col_sigma_range': (0.0, 0.0),
          'low_light_bits_range': (16, 16), 'low_light_gamma_range': (1.5, 1.5),
          'blur_prob': 0.0, 'jpeg_prob': 0.0, 'video_codec_prob': 0.0}


def _low_light(cfg, img: np.ndarray, seed: int = 0, **overrides) -> tuple[np.ndarray, dict]:
  """img [T, h, w, 3] through sample_window_params + apply_window at scale 1; cfg:
  the degradation_cfg fixture."""
  rng = np.random.default_rng(seed)
  params = D.sample_window_params(rng, cfg(**{**_LIGHT, **overrides}), img.shape[0], 1)
  return D.apply_window(img, params, 1, rng), params


def _linear(y: np.ndarray, gamma: float) -> np.ndarray:
  """Undoes the lift: the quantised linear signal the sensor gave."""
  return y.astype(np.float64) ** (C.DISPLAY_GAMMA * gamma)


def test_low_light_noise_variance_is_a_signal_plus_b(degradation_cfg):
  """Flat fields at four linear signal levels S: the lifted output, mapped back to
  linear, has mean S and variance a S + b (12288 pixels a level: 5 % is ~4 SE)."""
  signal = np.array([0.02, 0.05, 0.1, 0.2])
  x = (signal / _EXPOSURE) ** (1 / C.DISPLAY_GAMMA)  # the display values giving S
  img = np.broadcast_to(x[:, None, None, None], (4, 64, 64, 3)).astype(np.float32)
  out, params = _low_light(degradation_cfg, img)
  assert params['noise'] is None  # low light replaces the first round's noise
  assert params['low_light']['bits'] == 16 and params['low_light']['gamma'] == 1.5
  linear = _linear(out, 1.5)
  s = _EXPOSURE * img[:, 0, 0, 0].astype(np.float64) ** C.DISPLAY_GAMMA
  for t in range(4):
    expected = _GAIN * s[t] + _READ**2
    assert abs(linear[t].mean() - s[t]) < 4 * math.sqrt(expected / linear[t].size)
    assert linear[t].var() == pytest.approx(expected, rel=0.05), t
  # Dark but visible: the lift keeps the picture well above the linear signal.
  assert np.all(out.mean(axis=(1, 2, 3)) > 2 * s) and np.all(out.mean(axis=(1, 2, 3)) < x)


def test_banding_adds_the_configured_row_and_column_variance(degradation_cfg):
  """Row (column) means of flat fields vary by the banding variance plus the pixel
  noise over the row (column); offsets are shared by R, G and B."""
  row, col = 3e-3, 2e-3
  img = np.full((4, 512, 512, 3), (0.1 / _EXPOSURE) ** (1 / C.DISPLAY_GAMMA), np.float32)
  out, _ = _low_light(degradation_cfg, img, 1, low_light_row_sigma_range=(row, row),
                      low_light_col_sigma_range=(col, col))
  linear = _linear(out, 1.5)
  pixel = _GAIN * 0.1 + _READ**2
  row_means = linear.mean(axis=(2, 3))  # [T, H]: each frame has its own offsets
  col_means = linear.mean(axis=(1, 3))
  # The other direction's offsets shift every row (column) mean of a frame alike.
  row_var = (row_means - row_means.mean(axis=1, keepdims=True)).var() * 512 / 511
  col_var = (col_means - col_means.mean(axis=1, keepdims=True)).var() * 512 / 511
  assert row_var == pytest.approx(row**2 + pixel / (512 * 3), rel=0.12)  # 2048 rows: 4 SE
  assert col_var == pytest.approx(col**2 + pixel / (512 * 3), rel=0.12)
  per_channel = linear.mean(axis=2)  # [T, H, 3]
  assert np.corrcoef(per_channel[..., 0].ravel(), per_channel[..., 2].ravel())[0, 1] > 0.95
  plain, _ = _low_light(degradation_cfg, img, 1)
  plain_rows = _linear(plain, 1.5).mean(axis=(2, 3))
  assert plain_rows.var() == pytest.approx(pixel / (512 * 3), rel=0.12)


@pytest.mark.parametrize('bits', [8, 10])
def test_quantisation_leaves_a_dark_frame_few_levels(degradation_cfg, bits):
  """Without noise, a full ramp at exposure e keeps round(e (2^bits - 1)) + 1 levels."""
  exposure = 0.05
  ramp = np.linspace(0.0, 1.0, 64 * 64, dtype=np.float32).reshape(1, 64, 64, 1)
  img = np.repeat(ramp, 3, axis=-1)
  out, _ = _low_light(degradation_cfg, img, low_light_exposure_range=(exposure, exposure),
                      low_light_shot_gain_range=(0.0, 0.0), low_light_read_sigma_range=(0.0, 0.0),
                      low_light_bits_range=(bits, bits))
  levels = len(np.unique(out))
  assert levels == round(exposure * (2**bits - 1)) + 1
  assert np.all(np.diff(out[0, ..., 0].ravel()) >= 0)  # monotonic: a staircase of the ramp


def test_effects_are_off_by_default_and_draw_nothing(photo, degradation_cfg):
  """Default config: no low light, no rolling shutter, and the stream is exactly the
  one a config without the effects' fields draws: every earlier output is unchanged."""
  default = degradation_cfg(video_codec_prob=0.0)
  without = degradation_cfg(video_codec_prob=0.0)
  for key in [k for k in without if k.startswith(('low_light', 'rolling_shutter'))]:
    del without[key]
  assert 'low_light_prob' not in without and default.low_light_prob == 0.0
  assert default.rolling_shutter_prob == 0.0
  hr = np.stack([photo[2 * i:2 * i + 32, 3 * i:3 * i + 32] for i in range(3)])
  for seed in range(5):
    rng_a, rng_b = np.random.default_rng(seed), np.random.default_rng(seed)
    lq_a, params_a = D.degrade_window(hr, rng_a, default, 2)
    lq_b, params_b = D.degrade_window(hr, rng_b, without, 2)
    assert params_a['low_light'] is None and params_a['rolling_shutter'] is None
    assert params_a == params_b
    np.testing.assert_array_equal(lq_a, lq_b)
    assert rng_a.random() == rng_b.random()  # the same number of draws
    # Parameters from before the effects existed (no such keys) still apply.
    old = {k: v for k, v in params_a.items() if k not in ('low_light', 'rolling_shutter')}
    rng = np.random.default_rng(seed)
    D.sample_window_params(rng, default, 3, 2)
    np.testing.assert_array_equal(D.apply_window(hr, old, 2, rng), lq_a)


def test_effect_parameters_drift_within_their_ranges(degradation_cfg):
  cfg = degradation_cfg(low_light_prob=1.0, rolling_shutter_prob=1.0)
  rng = np.random.default_rng(4)
  for _ in range(50):
    params = D.sample_window_params(rng, cfg, 6, 4)
    assert json.loads(json.dumps(params)) == params
    light, shutter = params['low_light'], params['rolling_shutter']
    assert cfg.low_light_bits_range[0] <= light['bits'] <= cfg.low_light_bits_range[1]
    assert cfg.rolling_shutter_readout_range[0] <= shutter['readout'] <= (
        cfg.rolling_shutter_readout_range[1]) and shutter['method'] == 'blend'
    for field in C.LOW_LIGHT_FIELDS:
      low, high = getattr(cfg, f'low_light_{field}_range')
      values = np.array([f[field] for f in light['frames']])
      assert np.all((values >= low) & (values <= high)), field
      assert np.all(np.abs(np.diff(values)) <= cfg.drift * (high - low) + 1e-12), field
