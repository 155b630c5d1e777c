"""The synthetic camera: a fixed photo split, windows a function of the rng, motion
that is not global, frames as sharp as the photographs."""

import dataclasses

import cv2
import numpy as np
import pytest

from clarity_jax.data import source_base
from clarity_jax.data import sources
from clarity_jax.data import synthetic


def object_masks(src: synthetic.SyntheticSource, rng: np.random.Generator
                 ) -> tuple[np.ndarray, np.ndarray]:
  """The window and the object's soft mask per frame [T, crop, crop] (1 = object).

  The mask is rebuilt from the window's drawn parameters with the ellipse the
  renderer blends the object by, over the whole frame (the renderer evaluates it
  only in a box around the object).
  """
  shot = src.draw(rng)
  c = src.spec.crop
  masks = np.stack([synthetic.soft_ellipse(shot.to_object(j), shot.axes, src.edge_px, (c, c))
                    for j in range(len(shot.views))])
  return src.render(shot), masks


def test_photo_split_is_fixed_and_disjoint(tiny_config):
  assert set(synthetic.TRAIN_PHOTOS).isdisjoint(synthetic.VALIDATION_PHOTOS)
  assert len(synthetic.TRAIN_PHOTOS) >= 8 and len(synthetic.VALIDATION_PHOTOS) >= 2
  cfg = tiny_config()
  spec = source_base.WindowSpec(3, 32, 2)
  train = sources.make_source(cfg, spec, split='train')
  val = sources.make_source(cfg, spec, split='validation')
  assert tuple(train.names) == synthetic.TRAIN_PHOTOS
  assert tuple(val.names) == synthetic.VALIDATION_PHOTOS


def test_gray_photographs_become_rgb():
  camera = synthetic.load_photo('camera')
  assert camera.shape == (512, 512, 3) and camera.dtype == np.float32
  np.testing.assert_array_equal(camera[..., 0], camera[..., 2])
  import skimage.data  # pylint: disable=g-import-not-at-top
  np.testing.assert_allclose(camera[..., 1], skimage.data.camera() / 255.0, atol=1e-7)


def test_synthetic_windows_are_a_function_of_the_rng():
  src = synthetic.SyntheticSource(synthetic.load_photos('train'), source_base.WindowSpec(5, 48, 4),
                                  30)
  a = src.sample(np.random.default_rng([0, 5]))
  b = src.sample(np.random.default_rng([0, 5]))
  c = src.sample(np.random.default_rng([0, 6]))
  assert a.shape == (5, 48, 48, 3) and a.dtype == np.float32
  assert 0.0 <= a.min() and a.max() <= 1.0
  np.testing.assert_array_equal(a, b)
  assert not np.allclose(a, c)
  assert np.abs(a[1:] - a[:-1]).mean() > 1e-3  # the camera moves


def _phase_shift(a: np.ndarray, b: np.ndarray) -> np.ndarray:
  window = cv2.createHanningWindow(a.shape[::-1], cv2.CV_64F)
  (dx, dy), _ = cv2.phaseCorrelate(a.astype(np.float64), b.astype(np.float64), window)
  return np.array([dx, dy])


def _largest_square(mask: np.ndarray) -> tuple[int, int, int]:
  """(y, x, side) of the largest all-True square in a boolean mask."""
  dp = np.zeros((mask.shape[0] + 1, mask.shape[1] + 1), np.int32)
  for y, x in zip(*np.nonzero(mask)):
    dp[y + 1, x + 1] = 1 + min(dp[y, x + 1], dp[y + 1, x], dp[y, x])
  side = int(dp.max())
  y, x = np.unravel_index(dp.argmax(), dp.shape)
  return y - side, x - side, side


def _translate(img: np.ndarray, d: np.ndarray) -> np.ndarray:
  m = np.array([[1, 0, d[0]], [0, 1, d[1]]], np.float64)
  return cv2.warpAffine(img, m, img.shape[::-1], flags=cv2.INTER_CUBIC,
                        borderMode=cv2.BORDER_REFLECT_101)


def test_synthetic_motion_is_not_global():
  """Phase correlation on rendered frames: the object moves unlike the background.

  Textured photographs only, so that both motions are measurable.
  """
  photos = {n: synthetic.load_photo(n) for n in ('gravel', 'brick', 'grass', 'astronaut')}
  src = synthetic.SyntheticSource(photos, source_base.WindowSpec(2, 96, 4), frames_per_clip=30)
  for i in range(10):
    window, masks = object_masks(src, np.random.default_rng([1, i]))
    # The very window training sees.
    np.testing.assert_array_equal(window, src.sample(np.random.default_rng([1, i])))
    gray = window.mean(-1)
    background = np.maximum(masks[0], masks[1]) < 1e-3
    y, x, side = _largest_square(background)
    assert side >= 24
    d_background = _phase_shift(gray[0, y:y + side, x:x + side],
                                gray[1, y:y + side, x:x + side])
    d_object = _phase_shift(masks[0], masks[1])
    assert np.linalg.norm(d_object - d_background) > 1.0, (i, d_object, d_background)
    # The object's texture moves with its mask, not with the background.
    inside = cv2.erode((np.minimum(masks[0], masks[1]) > 0.999).astype(np.uint8),
                       np.ones((5, 5), np.uint8)).astype(bool)
    err_object = np.abs(_translate(gray[0], d_object) - gray[1])[inside].mean()
    err_background = np.abs(_translate(gray[0], d_background) - gray[1])[inside].mean()
    assert err_object < err_background, (i, err_object, err_background)


def test_synthetic_frames_stay_sharp():
  """Rendering (bicubic, zoom only ever shrinking) keeps the photograph's detail:
  high-frequency energy close to the photo's, far above a lightly blurred render."""
  photo = synthetic.load_photo('astronaut')
  src = synthetic.SyntheticSource({'astronaut': photo}, source_base.WindowSpec(1, 128, 4), 30)
  lap = lambda img: cv2.Laplacian(img.mean(-1), cv2.CV_32F).var()
  rendered = np.mean([lap(src.sample(np.random.default_rng(i))[0]) for i in range(8)])
  blurred = np.mean([lap(cv2.GaussianBlur(src.sample(np.random.default_rng(i))[0], (0, 0), 1.0))
                     for i in range(8)])
  assert rendered > 0.6 * lap(photo)
  assert rendered > 3 * blurred


def test_photographs_smaller_than_the_crop_are_an_error():
  with pytest.raises(source_base.ClipError, match='smaller than the 600x600 HR crop'):
    synthetic.SyntheticSource(synthetic.load_photos('validation'), source_base.WindowSpec(3, 600), 30)


def test_motion_gives_the_shots_poses_and_a_rolling_shutter_renders_between_them():
  """Shot.motion evaluates the paths at any time: at the frames' times exactly the
  shot's views and object; a vanishing readout renders what the global shutter does
  (remap against warpAffine), a long one shifts rows by the camera's motion."""
  src = synthetic.SyntheticSource(synthetic.load_photos('train'), source_base.WindowSpec(3, 64, 4),
                                  30)
  for i in range(3):
    shot = src.draw(np.random.default_rng([2, i]))
    np.testing.assert_array_equal(shot.motion.views(shot.times), shot.views)
    np.testing.assert_array_equal(shot.motion.objects(shot.times), shot.obj)
    still = src.render(shot)
    np.testing.assert_allclose(src.render(shot, 1e-12), still, atol=1e-4)
    hr, captured = src.sample_captured(np.random.default_rng([2, i]), 0.8)
    np.testing.assert_array_equal(hr, still)
    np.testing.assert_array_equal(captured, src.render(shot, 0.8))
    assert 0.0 <= captured.min() and captured.max() <= 1.0
    # Row 0 is read at the frame's time; the last rows late, hence different.
    np.testing.assert_allclose(captured[:, 0], still[:, 0], atol=1e-4)
    assert np.abs(captured[:, -8:] - still[:, -8:]).mean() > 1e-3
  bare = dataclasses.replace(shot, motion=None)
  with pytest.raises(ValueError, match='needs the shot'):
    src.render(bare, 0.5)
