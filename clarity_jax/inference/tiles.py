"""Space: the overlapping tiles a frame of any size is restored in, and the weights
that cross-fade them without seams (restorer.py runs the network on them)."""

from __future__ import annotations

import numpy as np


def tile_starts(size: int, tile: int, overlap: int) -> list[int]:
  """Start offsets of tiles of `tile` pixels covering [0, size), the last one flush
  with the end (shifted back, never padded: every tile sees real pixels)."""
  if tile >= size:
    return [0]
  stride = tile - overlap
  starts = list(range(0, size - tile, stride))
  return starts + [size - tile]


# Tile sides are multiples of this (up to --tile): a multiple of every variant's padding
# multiple (so ONNX engines pad nothing), and few enough distinct shapes that frames of
# many sizes (a folder of photographs) compile few programs.
TILE_STEP = 32


def tile_length(size: int, tile: int, overlap: int) -> int:
  """The tile side used along an axis of `size` pixels: as many tiles of at most
  `tile` as `tile` itself needs, each the shortest multiple of TILE_STEP that still
  covers the axis. A 320-wide frame takes two tiles of 192 instead of two of 256
  that overlap by 192: a quarter less work, the same seams."""
  if not tile or tile >= size:
    return size
  count = -(-(size - overlap) // (tile - overlap))
  shortest = max(-(-(size - overlap) // count) + overlap, 2 * overlap + 1)
  return min(tile, -(-shortest // TILE_STEP) * TILE_STEP)


def blend_ramp(length: int, overlap: int, fade_in: bool, fade_out: bool) -> np.ndarray:
  """1-D tile weights for sides that meet another tile over `overlap` pixels.

  The outer quarter of the overlap gets weight 0 (those pixels saw the tile's
  artificial border, whose influence is strongest there), the middle half a
  raised-cosine ramp, the rest 1; sides on the frame border are not faded.
  Two tiles overlapping by exactly `overlap` get sin^2 and cos^2 over the same
  pixels, which sum to one; longer overlaps (the shifted last tile) are
  normalised by the weight sum, which the inner 1-region keeps positive.
  """
  margin = overlap // 4
  ramp = overlap - 2 * margin
  w = np.ones(length, np.float32)
  if ramp > 0:
    up = np.concatenate([
        np.zeros(margin, np.float32),
        np.sin(0.5 * np.pi * (np.arange(ramp, dtype=np.float32) + 0.5) / ramp) ** 2,
        np.ones(overlap - margin - ramp, np.float32)])
    if fade_in:
      w[:overlap] *= up
    if fade_out:
      w[length - overlap:] *= up[::-1]
  return w


def axis_weights(size: int, tile: int, overlap: int, scale: int
                  ) -> tuple[list[int], list[np.ndarray], np.ndarray]:
  """Tile starts along one axis, their output-resolution ramps and 1 / their sum."""
  starts = tile_starts(size, tile, overlap)
  ramps = [blend_ramp(scale * tile, scale * overlap, s > 0, s + tile < size)
           for s in starts]
  total = np.zeros(scale * size, np.float32)
  for s, r in zip(starts, ramps):
    total[scale * s:scale * (s + tile)] += r
  return starts, ramps, 1.0 / total
