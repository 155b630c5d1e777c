"""Thin horizontal and vertical line artifacts: a score that finds them.

A restorer trained on targets with codec blocking (H.264 macroblock edges in
native-resolution video frames) learns to draw thin, straight, axis-aligned bright
lines through texture (docs/results.md). Such lines are invisible to PSNR
averages but obvious to the eye, so they get a score of their own.

The score compares a restoration with itself rotated: the residual over bicubic of
restore(x) and of restore(rotate(x, 45 degrees)) rotated back. A restorer without
a preference for the pixel axes gives the same residual both ways (up to
interpolation, which both sides get equally), so their thin-line energy along the
pixel axes is equal and the score is near 1. A restorer that draws axis-aligned
lines draws them along the axes in the first and along the diagonals in the second:
the score rises above 1. On texture (scikit-image's grass photograph) isotropic
filters after bicubic score 1.03-1.06 and a model with visible lines 2.65; on
man-made scenes with axis-aligned edges the baseline itself is higher (docs/results.md).
"""

from __future__ import annotations

from typing import Callable

import cv2
import numpy as np

from clarity_jax.models import bicubic


def rotate(image: np.ndarray, degrees: float) -> np.ndarray:
  """Rotates about the centre, same size, bicubic, borders reflected."""
  h, w = image.shape[:2]
  matrix = cv2.getRotationMatrix2D((w / 2 - 0.5, h / 2 - 0.5), degrees, 1.0)
  return cv2.warpAffine(image, matrix, (w, h), flags=cv2.INTER_CUBIC,
                        borderMode=cv2.BORDER_REFLECT)


def axis_line_energy(image: np.ndarray, length: int = 9) -> float:
  """Mean squared response of thin-line detectors along the pixel axes: a 1-pixel
  line's second difference across it, averaged over `length` pixels along it."""
  kernel = np.zeros((3, length), np.float32)
  kernel[1] = 1.0 / length
  kernel[0] = kernel[2] = -0.5 / length
  image = image.astype(np.float32)
  return sum(float(np.mean(cv2.filter2D(image, -1, k, borderType=cv2.BORDER_REFLECT)**2))
             for k in (kernel, kernel.T))


def line_artifact_score(restore: Callable[[np.ndarray], np.ndarray], hr: np.ndarray,
                        scale: int) -> float:
  """restore(lq [h, w, 3] float32) -> [s h, s w, 3], scored on the sharp square
  `hr` (side a multiple of 4 * scale), area-downscaled by `scale` as its input.

  Only the central half of each side is scored, which the rotated square covers.
  """
  side = hr.shape[0]
  if hr.shape[:2] != (side, side) or side % (4 * scale):
    raise ValueError(f'hr must be square with a side divisible by {4 * scale}, got '
                     f'{hr.shape[:2]}')

  def residual(image: np.ndarray) -> np.ndarray:
    lq = cv2.resize(image, (side // scale, side // scale), interpolation=cv2.INTER_AREA)
    out = restore(lq) - bicubic.upsample_frame(lq, scale)
    return out.mean(axis=-1)

  direct = rotate(rotate(residual(hr), 45), -45)  # the same two interpolations
  turned = rotate(residual(rotate(hr, 45)), -45)
  centre = slice(side // 4, 3 * side // 4)
  tiny = 1e-12  # a restorer that adds nothing to bicubic draws no lines: score 1
  return ((axis_line_energy(direct[centre, centre]) + tiny)
          / (axis_line_energy(turned[centre, centre]) + tiny))
