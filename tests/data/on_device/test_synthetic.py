"""The synthetic camera on the device against the reference: cv2's renders
(synthetic.SyntheticSource.render) of the same shots, augmented by
examples.augment_window."""

import cv2
import jax
import numpy as np
import pytest

from clarity_jax.data import examples
from clarity_jax.data.on_device import synthetic as jax_synthetic
from clarity_jax.data import source_base
from clarity_jax.data import synthetic

CROP = 48


@pytest.fixture(scope='module')
def camera():
  source = synthetic.SyntheticSource(synthetic.load_photos('train'),
                                     source_base.WindowSpec(5, CROP, 4), 30)
  stack, sizes = jax_synthetic.photo_stack(source.photos)
  render = jax.jit(jax_synthetic.render, static_argnums=(3, 4))
  return source, (stack, sizes), lambda cam: np.asarray(
      render(stack, sizes, {k: v[None] for k, v in cam.items()}, CROP, source.edge_px))[0]


def _augmented(window: np.ndarray, flip: int, k: int) -> np.ndarray:
  if flip:
    window = window[:, :, ::-1]
  return np.rot90(window, k, axes=(1, 2))


def test_photo_stack_holds_the_photographs_exactly(camera):
  source, (stack, sizes), _ = camera
  for i, photo in enumerate(source.photos):
    h, w = sizes[i]
    assert (h, w) == photo.shape[:2]
    p = jax_synthetic.PAD
    np.testing.assert_array_equal(stack[i, p:p + h, p:p + w].astype(np.float32) / 255.0, photo)


@pytest.mark.parametrize('readout', [0.0, 0.6])
def test_frames_match_cv2s_render_of_the_same_shot(camera, readout):
  """Every flip and quarter turn, a temporal reversal, the global shutter's target
  frame, and with a readout the rolling shutter's rows: cv2's frames to 1e-4."""
  source, _, render = camera
  rows = CROP if readout else 1
  for seed in range(8):
    flip, k, reverse = seed % 2, seed // 2, seed % 3 == 0
    order = np.arange(5)[::-1] if reverse else np.arange(5)
    cam = jax_synthetic.window_arrays(source, np.random.default_rng(seed), readout, order=order,
                                      targets=[2], rows=rows)
    cam['aug'] = np.array([flip, k], np.int32)
    got = render(cam)
    rng = np.random.default_rng(seed)
    still, captured = source.sample_captured(rng, readout) if readout else (
        source.sample(rng), None)
    want = _augmented((captured if readout else still)[order], flip, k)
    assert got.shape == (6, CROP, CROP, 3) and got.dtype == np.float32
    np.testing.assert_allclose(got[:5], want, atol=1e-4)
    assert np.abs(got[:5] - want).mean() < 5e-6
    np.testing.assert_allclose(got[5], _augmented(still[order], flip, k)[2], atol=1e-4)
    if readout:  # the rows moved: the target is not the captured frame
      assert np.abs(got[2] - got[5]).mean() > 1e-3


def test_reflect_101_beyond_the_photo_as_cv2():
  """Sample positions far outside the photograph reflect as cv2.BORDER_REFLECT_101."""
  img = synthetic.load_photo('coins')
  stack, sizes = jax_synthetic.photo_stack([img])
  # A view that zooms out 3x around the photo's corner: most taps lie outside.
  view = np.array([[3.0, 0.4, -150.0], [-0.3, 3.0, -120.0]])
  want = cv2.warpAffine(img, view, (CROP, CROP), flags=cv2.INTER_CUBIC | cv2.WARP_INVERSE_MAP,
                        borderMode=cv2.BORDER_REFLECT_101)
  # An object far out of view: the background alone.
  far = np.array([[1.0, 0.0, 1e4], [0.0, 1.0, 1e4]])
  cam = {'view': view[None, None], 'object': far[None, None], 'photo': np.int32(0),
         'texture': np.int32(0), 'axes': np.array([5.0, 5.0], np.float32),
         'texture_centre': np.zeros(2, np.float32), 'aug': np.zeros(2, np.int32)}
  cam = {k: np.asarray(v, np.float32 if k in ('view', 'object') else None)[None]
         for k, v in cam.items()}
  got = np.asarray(jax.jit(jax_synthetic.render, static_argnums=(3, 4))(
      stack, sizes, cam, CROP, 2.0))[0, 0]
  np.testing.assert_allclose(got, np.clip(want, 0, 1), atol=1e-4)


def test_device_examples_carry_the_camera_not_frames(tiny_config):
  """where='device' on the synthetic source: the host renders nothing; the shot and
  augmentation are those of the host path's example (same rng streams)."""
  config = tiny_config(**{'degradation.where': 'device'})
  make = examples.train_maker(config)
  assert make.camera and 'hr_window' not in make.spec and 'hr' not in make.spec
  config.degradation.where = 'host'
  host = examples.train_maker(config)
  stack, sizes = jax_synthetic.photo_stack(make.source.photos)
  crop = make.source.spec.crop
  for i in range(4):
    example = make(i)
    for key, (shape, dtype) in make.spec.items():
      assert example[key].shape == shape and example[key].dtype == dtype, key
    cam = {k: example[f'cam_{k}'][None] for k in jax_synthetic.ARRAY_KEYS}
    frames = np.asarray(jax_synthetic.render(stack, sizes, cam, crop, make.source.edge_px))[0]
    np.testing.assert_allclose(frames[config.num_neighbors], host(i)['hr'], atol=1e-4)
