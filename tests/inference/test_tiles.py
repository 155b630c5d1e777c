"""The tile grid of a frame and the ramps that blend it (the restorer runs the network
on it: tests/inference/test_restorer.py)."""

import numpy as np
import pytest

from clarity_jax.inference import tiles


def test_tile_grid_covers_the_frame_with_equal_tiles():
  assert tiles.tile_starts(100, 48, 12) == [0, 36, 52]
  assert tiles.tile_starts(40, 48, 12) == [0]
  for size, tile, overlap in [(100, 48, 12), (257, 64, 16), (64, 64, 8), (65, 64, 8)]:
    starts = tiles.tile_starts(size, tile, overlap)
    covered = np.zeros(size, bool)
    for s in starts:
      assert 0 <= s and s + tile <= size  # never outside: every tile the same shape
      covered[s:s + tile] = True
    assert covered.all()
    assert all(b - a <= tile - overlap for a, b in zip(starts, starts[1:]))


@pytest.mark.parametrize('size, tile, overlap, length', [
    (320, 256, 16, 192), (180, 256, 16, 180), (1280, 256, 16, 256), (100, 48, 12, 48),
    (257, 256, 16, 160), (600, 256, 16, 224), (64, 0, 8, 64)])
def test_tiles_are_no_longer_than_their_count_needs(size, tile, overlap, length):
  """As many tiles as `tile` needs, each the shortest multiple of 32 that covers the
  frame: less overlap restored twice, never longer than asked."""
  assert tiles.tile_length(size, tile, overlap) == length
  count = lambda t: len(tiles.tile_starts(size, t, overlap))
  assert count(length) == count(tile or size)


def test_raised_cosine_ramps_cross_fade_to_one():
  overlap = 8  # an outer quarter dropped (2 px), a 4 px ramp, then full weight
  left = tiles.blend_ramp(32, overlap, fade_in=False, fade_out=True)
  right = tiles.blend_ramp(32, overlap, fade_in=True, fade_out=False)
  # Two tiles overlapping by exactly `overlap` pixels: weights sum to 1 there.
  np.testing.assert_allclose(left[-overlap:] + right[:overlap], 1.0, atol=1e-6)
  i = np.arange(4) + 0.5
  np.testing.assert_allclose(right[:overlap], [0, 0, *np.sin(np.pi / 2 * i / 4) ** 2, 1, 1],
                             atol=1e-6)
  assert (left[:-overlap] == 1).all() and (right[overlap:] == 1).all()  # frame borders
  # Every pixel of any grid gets a positive total weight (no division by zero),
  # shifted last tiles included.
  for size, tile, ov in [(100, 48, 12), (257, 64, 16), (65, 64, 8), (130, 64, 31)]:
    total = np.zeros(size)
    for s in tiles.tile_starts(size, tile, ov):
      total[s:s + tile] += tiles.blend_ramp(tile, ov, s > 0, s + tile < size)
    assert total.min() > 0.5, (size, tile, ov)
