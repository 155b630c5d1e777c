"""Comparison pictures: bicubic | each method | GT, with the most detailed region zoomed.

Each column is a label, the full frame with a red box, and that box zoomed ZOOM
times with nearest neighbour (the pixels themselves, not a smoothed guess). The
box lands where the ground truth has the most gradient energy: texture and edges,
where restorations differ, not flat sky.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import cv2
import numpy as np

from clarity_jax.media import frames as frames_lib
from clarity_jax.evaluation import clips as clips_lib
from clarity_jax.inference import uncertainty_map

PICTURES_DIR = 'pictures'
# White gaps between panels, the label strip's height, and the zoom of the detail crop.
PAD = 4
LABEL_HEIGHT = 20
ZOOM = 4
_BOX_COLOUR = (255, 48, 48)


def detail_box(gt: np.ndarray, size: tuple[int, int], border: int = 0) -> tuple[int, int]:
  """(y, x) of the size = (h, w) window of largest gradient energy in an 8-bit frame.

  Energy: the sum of squared Sobel gradients of the luma. Window sums come from an
  integral image; the `border` pixels (cropped by the metrics) are avoided when the
  frame is large enough.
  """
  gray = cv2.cvtColor(gt, cv2.COLOR_RGB2GRAY).astype(np.float32)
  gx = cv2.Sobel(gray, cv2.CV_32F, 1, 0, ksize=3)
  gy = cv2.Sobel(gray, cv2.CV_32F, 0, 1, ksize=3)
  total = cv2.integral(gx * gx + gy * gy, sdepth=cv2.CV_64F)  # [H + 1, W + 1]
  h, w = size
  sums = total[h:, w:] - total[:-h, w:] - total[h:, :-w] + total[:-h, :-w]
  H, W = gray.shape
  lo_y, lo_x = (border if H - 2 * border >= h else 0), (border if W - 2 * border >= w else 0)
  region = sums[lo_y:H - h + 1 - lo_y, lo_x:W - w + 1 - lo_x]
  y, x = np.unravel_index(int(np.argmax(region)), region.shape)
  return int(y) + lo_y, int(x) + lo_x


def zoom_size(h: int, w: int) -> tuple[int, int]:
  """The crop shown zoomed: 1/ZOOM of the frame each way (at least 8 pixels)."""
  return max(min(8, h), h // ZOOM), max(min(8, w), w // ZOOM)


def picture_size(h: int, w: int, columns: int) -> tuple[int, int]:
  """(height, width) of a comparison picture of `columns` panels of h x w frames."""
  return LABEL_HEIGHT + 2 * h + PAD, columns * w + (columns - 1) * PAD


def _label(text: str, width: int) -> np.ndarray:
  """A white strip with `text` centred, shrunk until it fits the column."""
  strip = np.full((LABEL_HEIGHT, width, 3), 255, np.uint8)
  font, thickness = cv2.FONT_HERSHEY_SIMPLEX, 1
  scale = 0.45
  while scale > 0.2 and cv2.getTextSize(text, font, scale, thickness)[0][0] > width - 4:
    scale -= 0.05
  (tw, th), _ = cv2.getTextSize(text, font, scale, thickness)
  origin = (max((width - tw) // 2, 2), (LABEL_HEIGHT + th) // 2)
  cv2.putText(strip, text, origin, font, scale, (0, 0, 0), thickness, cv2.LINE_AA)
  return strip


def comparison_picture(panels: Sequence[tuple[str, np.ndarray]],
                       box: tuple[int, int, int, int]) -> np.ndarray:
  """Labelled columns (label / full frame with the box drawn / box zoomed ZOOM x).

  panels: (label, uint8 [h, w, 3]) in order, e.g. bicubic, methods..., GT; box:
  (y, x, bh, bw). Returns uint8 [picture_size(h, w, len(panels)), 3].
  """
  h, w = panels[0][1].shape[:2]
  y, x, bh, bw = box
  thickness = max(1, min(h, w) // 160)
  columns = []
  for label, frame in panels:
    full = np.ascontiguousarray(frame.copy())
    cv2.rectangle(full, (x, y), (x + bw - 1, y + bh - 1), _BOX_COLOUR, thickness)
    zoomed = cv2.resize(frame[y:y + bh, x:x + bw], (min(ZOOM * bw, w), min(ZOOM * bh, h)),
                        interpolation=cv2.INTER_NEAREST)
    lower = np.full((h, w, 3), 255, np.uint8)
    zy, zx = (h - zoomed.shape[0]) // 2, (w - zoomed.shape[1]) // 2
    lower[zy:zy + zoomed.shape[0], zx:zx + zoomed.shape[1]] = zoomed
    gap = np.full((PAD, w, 3), 255, np.uint8)
    columns.append(np.concatenate([_label(label, w), full, gap, lower], axis=0))
  sep = np.full((columns[0].shape[0], PAD, 3), 255, np.uint8)
  parts = [columns[0]]
  for column in columns[1:]:
    parts += [sep, column]
  return np.concatenate(parts, axis=1)


def picture_frames(clips: Sequence[clips_lib.Clip], protocol: str, num_pictures: int
                   ) -> dict[str, int]:
  """{clip: frame index} for the pictures: the middle scored frame of clips spread
  evenly over the list."""
  if num_pictures <= 0 or not clips:
    return {}
  picks = np.unique(np.round(np.linspace(0, len(clips) - 1, min(num_pictures, len(clips)))))
  out = {}
  for i in picks.astype(int):
    scored = clips_lib.included_frames(len(clips[i].lq), protocol)
    out[clips[i].name] = scored[len(scored) // 2]
  return out


def write_picture(folder: Path, file_stem: str, clip: clips_lib.Clip, index: int,
                  panels: Sequence[tuple[str, str, np.ndarray]], gt: np.ndarray,
                  border: int) -> dict[str, Any]:
  """Writes folder/PICTURES_DIR/<file_stem>_<frame>.png of frame `index` of a clip;
  returns its entry in metrics.json.

  panels: (method, label, uint8 output) per method, in column order; the ground
  truth `gt` is the last column; `border`: the pixels the metrics crop, avoided by
  the zoom box.
  """
  h, w = gt.shape[:2]
  bh, bw = zoom_size(h, w)
  y, x = detail_box(gt, (bh, bw), border=border)
  picture = comparison_picture([p[1:] for p in panels] + [('GT', gt)], (y, x, bh, bw))
  name = f'{file_stem}_{Path(clip.gt[index]).stem}.png'
  frames_lib.write_image(folder / PICTURES_DIR / name, picture)
  return {'file': f'{PICTURES_DIR}/{name}', 'clip': clip.name,
          'frame': clip.gt[index].name, 'zoom_box': [y, x, bh, bw],
          'columns': [p[0] for p in panels] + ['GT']}


# ------------------------------------------------------------ uncertainty


def uncertainty_picture(restored: np.ndarray, gt: np.ndarray, scale: np.ndarray
                        ) -> np.ndarray:
  """restored | actual error | predicted error, both errors on the map's one colour
  scale (inference/uncertainty_map.py) and its legend under all three: where the
  two maps differ, the head is wrong. uint8 RGB."""
  error = np.abs(restored.astype(np.float32) - gt.astype(np.float32)).mean(-1) / 255.0
  h, w = restored.shape[:2]
  columns = [np.concatenate([_label(text, w), frame]) for text, frame in (
      ('restored', restored), ('actual error |restored - GT|', uncertainty_map.colorize(error)),
      ('predicted error (uncertainty head)', uncertainty_map.colorize(scale)))]
  sep = np.full((LABEL_HEIGHT + h, PAD, 3), 255, np.uint8)
  row = np.concatenate([columns[0], sep, columns[1], sep, columns[2]], axis=1)
  return np.concatenate([row, uncertainty_map.legend(row.shape[1])])


_CURVE_COLOURS = {'uncertainty': (31, 119, 180), 'oracle': (44, 160, 44),
                  'random': (127, 127, 127)}


def curves_picture(curves: dict[str, list[float]], title: str,
                   size: tuple[int, int] = (420, 640)) -> np.ndarray:
  """The sparsification curves (calibration.py) drawn on axes: removed share of the
  pixels against the mean error of the rest, in grey levels. uint8 RGB."""
  height, width = size
  left, right, top, bottom = 56, 16, 30, 44
  canvas = np.full((height, width, 3), 255, np.uint8)
  font, ink = cv2.FONT_HERSHEY_SIMPLEX, (0, 0, 0)
  x = np.asarray(curves['fractions'], np.float64)
  y_max = 1.3 * max(max(curves[k]) for k in _CURVE_COLOURS)  # room for the key
  px = lambda v: int(round(left + v * (width - left - right)))
  py = lambda v: int(round(height - bottom - v / y_max * (height - top - bottom)))
  for i in range(6):  # grid and ticks: x every 0.2, y in five steps
    fx, fy = i / 5, y_max * i / 5
    cv2.line(canvas, (px(fx), top), (px(fx), height - bottom), (225, 225, 225), 1)
    cv2.line(canvas, (left, py(fy)), (width - right, py(fy)), (225, 225, 225), 1)
    cv2.putText(canvas, f'{fx:.1f}', (px(fx) - 10, height - bottom + 16), font, 0.4, ink, 1,
                cv2.LINE_AA)
    cv2.putText(canvas, f'{fy:.1f}', (4, py(fy) + 4), font, 0.4, ink, 1, cv2.LINE_AA)
  cv2.rectangle(canvas, (left, top), (width - right, height - bottom), ink, 1)
  for name, colour in _CURVE_COLOURS.items():
    points = np.array([[px(a), py(b)] for a, b in zip(x, curves[name])], np.int32)
    cv2.polylines(canvas, [points], False, colour, 2, cv2.LINE_AA)
  for i, (name, colour) in enumerate(_CURVE_COLOURS.items()):  # the key, top right
    yk = top + 18 + 18 * i
    cv2.line(canvas, (width - right - 150, yk - 4), (width - right - 124, yk - 4), colour, 2)
    cv2.putText(canvas, name, (width - right - 118, yk), font, 0.45, ink, 1, cv2.LINE_AA)
  cv2.putText(canvas, f'{title}: MAE of the rest (grey levels)', (left, top - 10), font,
              0.5, ink, 1, cv2.LINE_AA)
  cv2.putText(canvas, 'share of pixels removed, most uncertain first', (left + 60, height - 8),
              font, 0.45, ink, 1, cv2.LINE_AA)
  return canvas


def write_uncertainty_picture(folder: Path, file_stem: str, clip: clips_lib.Clip,
                              index: int, method: str, restored: np.ndarray, gt: np.ndarray,
                              scale: np.ndarray) -> dict[str, Any]:
  """Writes uncertainty_picture of frame `index`; returns its metrics.json entry."""
  name = f'{file_stem}_{Path(clip.gt[index]).stem}.png'
  frames_lib.write_image(folder / PICTURES_DIR / name, uncertainty_picture(restored, gt, scale))
  return {'file': f'{PICTURES_DIR}/{name}', 'kind': 'uncertainty', 'method': method,
          'clip': clip.name, 'frame': clip.gt[index].name}


def write_curves_picture(folder: Path, file_stem: str, method: str,
                         curves: dict[str, list[float]]) -> dict[str, Any]:
  """Writes curves_picture of a method's sparsification; returns its entry."""
  name = f'{file_stem}.png'
  frames_lib.write_image(folder / PICTURES_DIR / name, curves_picture(curves, method))
  return {'file': f'{PICTURES_DIR}/{name}', 'kind': 'sparsification', 'method': method}
