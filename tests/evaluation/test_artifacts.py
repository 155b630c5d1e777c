"""The line-artifact score: 1 for restorers without a preference for the pixel axes,
well above 1 for one that draws horizontal and vertical lines."""

import cv2
import numpy as np
import pytest
import skimage.data

from clarity_jax.evaluation import artifacts
from clarity_jax.models import bicubic

SCALE = 4


@pytest.fixture(scope='module')
def hr():
  """A real photograph of grass (scikit-image): texture in every direction."""
  grass = skimage.data.grass()[:256, :256].astype(np.float32) / 255.0
  return np.repeat(grass[..., None], 3, axis=-1)


def _sharpened(lq):
  """Bicubic, then an isotropic unsharp mask: detail added, no direction preferred."""
  up = bicubic.upsample_frame(lq, SCALE)
  return up + 0.8 * (up - cv2.GaussianBlur(up, (0, 0), 1.5))


def _with_lines(lq):
  """Bicubic plus thin bright lines along rows and columns wherever there is texture,
  fixed to the pixel grid: the artifact of docs/results.md."""
  up = bicubic.upsample_frame(lq, SCALE)
  texture = np.abs(up - cv2.GaussianBlur(up, (0, 0), 3)).mean(-1, keepdims=True)
  grid = np.zeros(up.shape[:2] + (1,), np.float32)
  grid[::13] = grid[:, ::17] = 1.0
  return up + 3.0 * texture * grid


def test_isotropic_restorers_score_about_one(hr):
  assert artifacts.line_artifact_score(lambda lq: bicubic.upsample_frame(lq, SCALE), hr,
                                       SCALE) == 1.0
  assert artifacts.line_artifact_score(_sharpened, hr, SCALE) == pytest.approx(1.0, abs=0.1)
  blurred = lambda lq: cv2.GaussianBlur(bicubic.upsample_frame(lq, SCALE), (0, 0), 1.0)
  assert artifacts.line_artifact_score(blurred, hr, SCALE) == pytest.approx(1.0, abs=0.1)


def test_axis_aligned_lines_score_high(hr):
  assert artifacts.line_artifact_score(_with_lines, hr, SCALE) > 2.0


def test_axis_line_energy_sees_lines_along_the_axes_only():
  img = np.zeros((64, 64), np.float32)
  img[32, 8:56] = 1.0  # a horizontal line
  diagonal = np.eye(64, dtype=np.float32)
  assert artifacts.axis_line_energy(img) > 5 * artifacts.axis_line_energy(diagonal) / (
      diagonal.sum() / img.sum())


def test_bad_shape(hr):
  with pytest.raises(ValueError, match='square'):
    artifacts.line_artifact_score(_sharpened, hr[:, :200], SCALE)
