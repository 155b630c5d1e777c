"""Comparison pictures: the detail box, the layout of the columns, the frames shown."""

from pathlib import Path

import cv2
import numpy as np
from scipy import ndimage

from clarity_jax.evaluation import clips as clips_lib
from clarity_jax.evaluation import pictures


def test_detail_box_is_the_window_of_most_gradient_energy():
  rng = np.random.default_rng(0)
  img = rng.integers(0, 256, (30, 41, 3), dtype=np.uint8)
  img = cv2.GaussianBlur(img, (0, 0), 2.0)
  gray = cv2.cvtColor(img, cv2.COLOR_RGB2GRAY).astype(np.float64)
  energy = ndimage.sobel(gray, 1, mode='reflect') ** 2 + ndimage.sobel(gray, 0,
                                                                        mode='reflect') ** 2
  h, w = 7, 9
  border = 3
  best, where = -1.0, None
  for y in range(border, 30 - h - border + 1):
    for x in range(border, 41 - w - border + 1):
      total = energy[y:y + h, x:x + w].sum()
      if total > best:
        best, where = total, (y, x)
  assert pictures.detail_box(img, (h, w), border=border) == where


def test_comparison_picture_columns_show_each_frame_and_its_zoomed_box():
  rng = np.random.default_rng(1)
  h, w = 48, 64
  panels = [(name, rng.integers(0, 256, (h, w, 3), dtype=np.uint8))
            for name in ('bicubic', 'net', 'GT')]
  bh, bw = pictures.zoom_size(h, w)
  assert (bh, bw) == (h // pictures.ZOOM, w // pictures.ZOOM)
  y, x = 10, 20
  img = pictures.comparison_picture(panels, (y, x, bh, bw))
  assert img.shape == (*pictures.picture_size(h, w, 3), 3)
  for c, (_, frame) in enumerate(panels):
    left = c * (w + pictures.PAD)
    full = img[pictures.LABEL_HEIGHT:pictures.LABEL_HEIGHT + h, left:left + w]
    inside = (slice(y + 1, y + bh - 1), slice(x + 1, x + bw - 1))
    np.testing.assert_array_equal(full[inside], frame[inside])  # the box is only drawn
    assert tuple(full[y, x]) == (255, 48, 48)
    zoomed = img[pictures.LABEL_HEIGHT + h + pictures.PAD:, left:left + w]
    np.testing.assert_array_equal(zoomed, np.repeat(np.repeat(
        frame[y:y + bh, x:x + bw], pictures.ZOOM, 0), pictures.ZOOM, 1))
  # The gaps between columns are white.
  assert (img[:, w:w + pictures.PAD] == 255).all()


def test_picture_frames_are_the_middle_scored_frame_of_spread_clips():
  def clip(name: str, n: int) -> clips_lib.Clip:
    paths = tuple(Path(f'{name}/{t:03d}.png') for t in range(n))
    return clips_lib.Clip(name, paths, paths, (4, 4), (8, 8))

  clips = [clip('a', 5), clip('b', 4), clip('c', 7), clip('d', 3)]
  assert pictures.picture_frames(clips, 'basicsr', 2) == {'a': 2, 'd': 1}
  assert pictures.picture_frames(clips, 'fmanet', 2) == {'a': 2, 'd': 1}
  assert pictures.picture_frames(clips, 'basicsr', 9) == {'a': 2, 'b': 2, 'c': 3, 'd': 1}
  assert pictures.picture_frames(clips, 'fmanet', 4) == {'a': 2, 'b': 2, 'c': 3, 'd': 1}
  assert pictures.picture_frames(clips, 'basicsr', 0) == {}
