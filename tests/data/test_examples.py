"""Examples for degradation on the device: the host path's parameters, as arrays.

The reference is the host path itself: degradations.sample_window_params /
degrade_window (NumPy/OpenCV) on the same rng stream, and
jax_degradations.window_arrays on those parameters.
"""

import itertools

import numpy as np
import pytest

from clarity_jax.data import degradations
from clarity_jax.data import examples
from clarity_jax.data.on_device import degradations as jax_degradations
from clarity_jax.data.on_device import synthetic as jax_synthetic
from clarity_jax import errors

TINY = np.finfo(np.float32).tiny
INDICES = range(6)


@pytest.fixture(scope='module')
def small(tiny_config):
  """small(**overrides): 8x8 LQ crops at x4, K = 1, the temporal window (T' = 4)."""
  defaults = {'data.crop_size': 8, 'scale': 4, 'num_neighbors': 1,
              'loss.temporal_weight': 0.1}
  return lambda **overrides: tiny_config(**{**defaults, **overrides})


def makers(config):
  """(host-mode maker, device-mode maker) of the same training stream."""
  config.degradation.where = 'host'
  host = examples.train_maker(config)
  config.degradation.where = 'device'
  return host, examples.train_maker(config)


def flushed(v):
  """Subnormal floats -> 0 (what a flush-to-zero CPU, e.g. in tf.data, computes)."""
  v = np.asarray(v)
  return np.where(np.abs(v) < TINY, np.zeros((), v.dtype), v) if v.dtype.kind == 'f' else v


def test_device_examples_have_the_declared_keys_shapes_and_dtypes(small):
  _, make = makers(small())
  cfg = small().degradation
  size = jax_degradations.max_kernel_size(cfg)
  affines = ((4, 1, 2, 3), np.float32)  # 4 frames, one affine each (no rolling shutter)
  expected = {'index': ((), np.uint32), 'codec_crf': ((), np.int32),
              'cam_view': affines, 'cam_object': affines, 'cam_photo': ((), np.int32),
              'cam_texture': ((), np.int32), 'cam_axes': ((2,), np.float32),
              'cam_texture_centre': ((2,), np.float32), 'cam_aug': ((2,), np.int32),
              'deg_blur_kernel': ((4, size, size), np.float32),
              'deg_resize': ((), np.int32), 'deg_noise_kind': ((), np.int32),
              'deg_noise_level': ((4,), np.float32), 'deg_jpeg_quality': ((4,), np.int32)}
  for key, (shape, dtype) in expected.items():
    assert make.spec[key] == (shape, np.dtype(dtype)), key
  # The host degrades nothing and, on the synthetic camera, renders nothing.
  assert make.keys == tuple(make.spec) and not {'lq', 'hr', 'hr_window'} & set(make.spec)
  reference = jax_degradations.window_arrays(
      degradations.sample_window_params(np.random.default_rng(1), cfg, 4, 4),
      kernel_size=size)
  assert {k for k in make.keys if k.startswith('deg_')} == {f'deg_{k}' for k in reference}
  for i in INDICES:
    example = make(i)
    assert list(example) == list(make.keys)
    for key, (shape, dtype) in make.spec.items():
      assert example[key].shape == shape and example[key].dtype == dtype, key
    assert example['index'] == i


def test_footage_examples_carry_hr_windows(small, tmp_path, png_clips):
  """Sources other than the synthetic camera: the host reads, crops and augments
  the HR window; the device degrades it."""
  png_clips(tmp_path / 'clips', {'a': 6}, size=(40, 48))
  config = small(**{'data.source': 'footage', 'data.path': str(tmp_path / 'clips'),
                    'data.cache_dir': str(tmp_path / 'cache')})
  host_make, make = makers(config)
  assert not make.camera and make.spec['hr_window'] == ((4, 32, 32, 3), np.float32)
  for i in INDICES[:3]:
    host, device = host_make(i), make(i)
    np.testing.assert_array_equal(device['hr_window'][1], host['hr'])
    np.testing.assert_array_equal(device['hr'], host['hr'])


def _window(make, i):
  """The host path's HR window of example i: the source's frames, augmented."""
  source_rng, augment_rng, _ = make.rngs(i)
  return examples.augment_window(make.source.sample(source_rng), augment_rng)


def _rendered(make, example):
  """The device's render of a camera example."""
  stack, sizes = jax_synthetic.photo_stack(make.source.photos)
  cam = {k: example[f'cam_{k}'][None] for k in jax_synthetic.ARRAY_KEYS}
  return np.asarray(jax_synthetic.render(stack, sizes, cam, make.source.spec.crop,
                                         make.source.edge_px))[0]


@pytest.mark.parametrize('codec_prob', [0.0, 0.4, 1.0])
def test_parameters_and_codec_windows_are_the_host_paths(codec_prob, small):
  """Example i draws the same window and parameters in both modes, the codec's CRF
  included (-1 for the windows not drawn for it)."""
  config = small(**{'degradation.video_codec_prob': codec_prob})
  host_make, make = makers(config)
  cfg, k = config.degradation, 1
  on_host = []
  for i in INDICES:
    host, device = host_make(i), make(i)
    window = _window(make, i)
    np.testing.assert_array_equal(window[k], host['hr'])
    np.testing.assert_array_equal(window[k + 1], host['hr_next'])
    # The device renders the same window, to cv2's float error.
    np.testing.assert_allclose(_rendered(make, device), window, atol=1e-4)
    # The reference entry point on the same degradation stream gives host mode's 'lq'.
    params = degradations.sample_window_params(make.rngs(i)[2], cfg, 4, 4)
    lq, reference_params = degradations.degrade_window(window, make.rngs(i)[2], cfg, 4)
    assert reference_params == params
    np.testing.assert_array_equal(host['lq'], flushed(lq[:3]))
    np.testing.assert_array_equal(host['lq_next'], flushed(lq[1:]))
    # ... and device mode carries exactly these parameters.
    arrays = jax_degradations.window_arrays(
        params, kernel_size=jax_degradations.max_kernel_size(cfg))
    for key, value in arrays.items():
      np.testing.assert_array_equal(device[f'deg_{key}'], flushed(value), err_msg=key)
    codec = params['video'] is not None
    assert device['codec_crf'] == (params['video']['crf'] if codec else -1)
    on_host.append(codec)
  if codec_prob == 0.0:
    assert not any(on_host)
  elif codec_prob == 1.0:
    assert all(on_host)
  else:
    assert 0 < sum(on_host) < len(on_host)  # both kinds of window were checked


def test_host_mode_keeps_its_keys(small):
  host, _ = makers(small())
  assert host.keys == ('lq', 'hr', 'lq_next', 'hr_next')
  assert not host.device


def test_where_must_be_host_or_device(small):
  config = small(**{'degradation.where': 'gpu'})
  with pytest.raises(errors.ConfigError, match=r"^config.degradation.where: 'gpu'"):
    examples.train_maker(config)


def test_augment_window_is_a_dihedral_transform_and_maybe_reversed():
  hr = np.random.default_rng(0).random((3, 4, 4, 3)).astype(np.float32)
  candidates = []
  for flip, k, reverse in itertools.product((False, True), range(4), (False, True)):
    x = hr[:, :, ::-1] if flip else hr
    x = np.rot90(x, k, axes=(1, 2))
    candidates.append(x[::-1] if reverse else x)
  seen = set()
  for i in range(200):
    out = examples.augment_window(hr, np.random.default_rng(i))
    (match,) = [j for j, c in enumerate(candidates) if np.array_equal(out, c)]
    seen.add(match)
  assert seen == set(range(16))


@pytest.mark.parametrize('device', [False, True])
def test_the_synthetic_camera_renders_a_windows_rolling_shutter(small, device):
  """rolling_shutter_prob=1: the LQ is degraded from the exact rolling-shutter render
  of the same shot, augmented alike; the targets are the global shutter's frames,
  the very ones of a run without the effect; nothing is left to blend."""
  config = small(**{'degradation.rolling_shutter_prob': 1.0,
                    'degradation.where': 'device' if device else 'host'})
  make = examples.train_maker(config)
  plain = examples.train_maker(small(**{'degradation.where': 'host'}))
  for i in INDICES[:3]:
    example, reference = make(i), plain(i)
    if not device:
      np.testing.assert_array_equal(example['hr'], reference['hr'])
    source_rng, augment_rng, degrade_rng = make.rngs(i)
    params = degradations.sample_window_params(degrade_rng, config.degradation, 4, 4)
    still, captured = make.source.sample_captured(source_rng,
                                                  params['rolling_shutter']['readout'])
    assert np.abs(captured - still).mean() > 1e-3  # the rows moved
    captured = examples.augment_window(captured, augment_rng)
    if device:
      # The device renders each row at its own time, and the targets apart.
      rendered = _rendered(make, example)
      np.testing.assert_allclose(rendered[:4], captured, atol=1e-4)
      np.testing.assert_allclose(rendered[4], reference['hr'], atol=1e-4)
      assert example['deg_rolling_shutter_readout'] == 0  # already in the frames
      continue
    lq = degradations.apply_window(captured, dict(params, rolling_shutter=None), 4, degrade_rng)
    np.testing.assert_array_equal(example['lq'], flushed(lq[:3]))
    np.testing.assert_array_equal(example['lq_next'], flushed(lq[1:]))
