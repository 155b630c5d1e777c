"""The windows every clip source samples (source_base.py): their frame offsets, clip
windows of consecutive frames and aligned crops, reflection at clip edges, sizes.
Frame-folder footage (footage.FootageSource) serves as the clip source."""

import pathlib

import numpy as np
import pytest

from clarity_jax.data import footage
from clarity_jax.data import source_base
from clarity_jax.media import temporal


def clip_source(root: pathlib.Path, spec: source_base.WindowSpec) -> footage.FootageSource:
  """The frame folders under `root`, cached beside it (never in it)."""
  return footage.FootageSource([root], spec, cache_dir=root.parent / 'cache')


def frame_ids(window: np.ndarray, base: int = 0) -> list[int]:
  """The frame index each window frame came from (see the coordinate_clip fixture)."""
  return [(int(round(v * 255.0)) - base) // 10 - 1 for v in window[:, 0, 0, 2]]


def test_window_offsets():
  np.testing.assert_array_equal(source_base.WindowSpec(5, 8).offsets, [-2, -1, 0, 1, 2])
  np.testing.assert_array_equal(source_base.WindowSpec(6, 8).offsets, [-2, -1, 0, 1, 2, 3])
  np.testing.assert_array_equal(source_base.WindowSpec(1, 8).offsets, [0])


# ------------------------------------------------------------ clip windows


def test_clip_windows_are_consecutive_and_crops_aligned(tmp_path, coordinate_clip):
  written = coordinate_clip(tmp_path / 'clips', 'a', 9, h=20, w=24)
  spec = source_base.WindowSpec(num_frames=5, crop=8, align=4)
  src = clip_source(tmp_path / 'clips', spec)
  assert src.names == ['a'] and list(src.lengths) == [9] and src.sizes == [(20, 24)]
  origins = set()
  for i in range(24):
    window = src.sample(np.random.default_rng([7, i]))
    assert window.shape == (5, 8, 8, 3) and window.dtype == np.float32
    ids = frame_ids(window)
    centre = ids[2]
    np.testing.assert_array_equal(ids, temporal.reflect_indices(centre + np.arange(-2, 3), 9))
    x0, y0 = (int(round(v * 255)) for v in window[0, 0, 0, :2])
    assert x0 % 4 == 0 and y0 % 4 == 0
    # Every frame is the same crop of the same place.
    expected = written[0][y0:y0 + 8, x0:x0 + 8, :2]
    np.testing.assert_allclose(window[..., :2], np.broadcast_to(expected, (5, 8, 8, 2)),
                               atol=1e-6)
    origins.add((y0, x0))
  assert len(origins) > 3  # random crops, not one fixed place


def test_short_clip_is_reflected_and_warns_once(tmp_path, coordinate_clip):
  root = tmp_path / 'clips'
  coordinate_clip(root, 'long', 6)
  coordinate_clip(root, 'short', 2, base=150)
  spec = source_base.WindowSpec(num_frames=5, crop=8, align=2)
  with pytest.warns(source_base.ShortClipWarning, match=r'short.*2 frames.*5-frame') as record:
    src = clip_source(root, spec)
  assert len(record) == 1 and str(root / 'short') in str(record[0].message)
  seen = set()
  for i in range(40):
    window = src.sample(np.random.default_rng([1, i]))
    if window[0, 0, 0, 2] > 150 / 255:  # from the 2-frame clip
      seen.add(tuple(frame_ids(window, base=150)))
  # Reflection without repeating the edge frame: 0 1 0 1 0 or 1 0 1 0 1.
  assert seen == {(0, 1, 0, 1, 0), (1, 0, 1, 0, 1)}


def test_frames_smaller_than_crop_name_the_clip(tmp_path, coordinate_clip):
  coordinate_clip(tmp_path / 'clips', 'tiny', 3, h=12, w=12)
  with pytest.raises(source_base.ClipError,
                     match=r'^' + str(tmp_path / 'clips' / 'tiny') + r': .*12x12'):
    clip_source(tmp_path / 'clips', source_base.WindowSpec(3, 16))
