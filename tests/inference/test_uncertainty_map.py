"""The error-scale picture: a fixed log scale in viridis, and a legend that says it."""

import cv2
import numpy as np

from clarity_jax.inference import uncertainty_map


def _viridis(index: int) -> np.ndarray:
  lut = cv2.applyColorMap(np.arange(256, dtype=np.uint8)[:, None], cv2.COLORMAP_VIRIDIS)
  return lut[index, 0, ::-1]


def test_colorize_is_viridis_on_a_fixed_log_scale():
  lo, hi = uncertainty_map.LEVELS
  levels = np.array([[0.0, lo, np.sqrt(lo * hi), hi, 10 * hi]]) / 255.0
  rgb = uncertainty_map.colorize(levels)
  assert rgb.shape == (1, 5, 3) and rgb.dtype == np.uint8
  np.testing.assert_array_equal(rgb[0, 0], _viridis(0))  # below the scale: its end
  np.testing.assert_array_equal(rgb[0, 1], _viridis(0))
  np.testing.assert_array_equal(rgb[0, 2], _viridis(128))  # the geometric middle
  np.testing.assert_array_equal(rgb[0, 3], _viridis(255))
  np.testing.assert_array_equal(rgb[0, 4], _viridis(255))
  # Perceptually ordered: brightness grows with the error.
  ramp = uncertainty_map.colorize(np.geomspace(lo, hi, 64)[None] / 255.0)[0]
  luma = ramp @ np.array([0.299, 0.587, 0.114])
  assert np.all(np.diff(luma) >= -1)


def test_legend_bar_matches_the_map_colours_at_its_ticks():
  width = 640
  strip = uncertainty_map.legend(width)
  height = uncertainty_map.legend_height(width)
  assert strip.shape == (height, width, 3) and height % 2 == 0
  assert uncertainty_map.legend_height(3840) > height  # legible at 4K
  row = strip[height // 4]
  bar = np.flatnonzero(np.any(row != 255, axis=-1))
  x0, x1 = bar[0], bar[-1]
  lo, hi = np.log2(uncertainty_map.LEVELS)
  for level in (1, 4, 16):
    x = int(round(x0 + (np.log2(level) - lo) / (hi - lo) * (x1 - x0)))
    want = uncertainty_map.colorize(np.array([[level / 255.0]]))[0, 0]
    assert np.abs(row[x].astype(int) - want).max() <= 12, level
  # Tick labels and caption: dark text below the bar.
  assert (strip[height // 2:] < 128).any()


def test_map_picture_is_the_map_over_its_legend():
  scale = np.full((30, 200), 4 / 255.0, np.float32)
  picture = uncertainty_map.map_picture(scale)
  assert picture.shape == (30 + uncertainty_map.legend_height(200), 200, 3)
  np.testing.assert_array_equal(picture[:30], uncertainty_map.colorize(scale))
