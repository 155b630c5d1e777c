"""The uncertainty head's error scale as a picture: a colour map with its legend.

b (the Laplace scale of each pixel's error, models/claritynet.py) is shown in grey
levels of 255 on a log scale from LEVELS[0] to LEVELS[1]: restoration errors span
orders of magnitude (a flat wall under 1 grey level, a fine texture over 10), and
a linear scale would paint one or the other a single colour. The scale is fixed,
not stretched per frame, so a video's map does not flicker and every frame reads
against the same legend. Viridis (OpenCV's): perceptually uniform, so equal steps
of colour are equal steps of log error, and readable by colour-blind viewers.
"""

from __future__ import annotations

import functools

import cv2
import numpy as np

# Grey levels (of 255) at the two ends of the colour scale; values beyond are
# clipped to the end colours ("0.5-" and "32+" in the legend).
LEVELS = (0.5, 32.0)
TICKS = (0.5, 1, 2, 4, 8, 16, 32)
CAPTION = 'predicted error, grey levels'


def colorize(scale: np.ndarray) -> np.ndarray:
  """b [H, W] in [0, 1] image units -> uint8 RGB [H, W, 3] (viridis, log scale)."""
  lo, hi = np.log2(LEVELS[0]), np.log2(LEVELS[1])
  levels = np.clip(np.asarray(scale, np.float32) * 255.0, *LEVELS)
  index = np.rint((np.log2(levels) - lo) / (hi - lo) * 255.0).astype(np.uint8)
  return np.ascontiguousarray(cv2.applyColorMap(index, cv2.COLORMAP_VIRIDIS)[..., ::-1])


def legend_height(width: int) -> int:
  """Rows of a legend under a picture `width` pixels wide: even (video frames need
  even sides) and growing with the width, so it stays legible at 4K."""
  return 2 * max(24, width // 64)


@functools.lru_cache(maxsize=8)
def legend(width: int) -> np.ndarray:
  """A white strip: the colour bar over the full LEVELS range, its ticks labelled
  in grey levels, and the caption. uint8 RGB [legend_height(width), width, 3].

  Cached (every frame of a video takes the same strip; drawing text per frame
  would cost more than the map) and read-only: callers concatenate, never write.
  """
  height = legend_height(width)
  strip = np.full((height, width, 3), 255, np.uint8)
  margin = max(4, width // 50)
  bar_top, bar_bottom = height // 12, int(0.38 * height)
  x0, x1 = margin, width - margin
  lo, hi = np.log2(LEVELS[0]), np.log2(LEVELS[1])
  ramp = 2.0 ** np.linspace(lo, hi, max(x1 - x0, 1), dtype=np.float32) / 255.0
  strip[bar_top:bar_bottom, x0:x1] = colorize(ramp[None, :])
  font, thickness = cv2.FONT_HERSHEY_SIMPLEX, 1
  font_scale = height / 110.0
  labels = [(f'{t:g}' + ('-' if t == LEVELS[0] else '+' if t == LEVELS[1] else ''),
             x0 + (np.log2(t) - lo) / (hi - lo) * (x1 - x0 - 1)) for t in TICKS]
  text_y = int(0.68 * height)
  for text, x in labels:
    (tw, _), _ = cv2.getTextSize(text, font, font_scale, thickness)
    left = int(np.clip(x - tw / 2, 0, width - tw))
    cv2.line(strip, (int(x), bar_bottom), (int(x), bar_bottom + height // 12), (0, 0, 0), 1)
    cv2.putText(strip, text, (left, text_y), font, font_scale, (0, 0, 0), thickness,
                cv2.LINE_AA)
  (cw, _), _ = cv2.getTextSize(CAPTION, font, font_scale, thickness)
  cv2.putText(strip, CAPTION, (max((width - cw) // 2, 0), int(0.95 * height)), font,
              font_scale, (80, 80, 80), thickness, cv2.LINE_AA)
  strip.flags.writeable = False
  return strip


def map_picture(scale: np.ndarray) -> np.ndarray:
  """The map with its legend underneath: uint8 RGB [H + legend_height(W), W, 3]."""
  return np.concatenate([colorize(scale), legend(scale.shape[1])], axis=0)
