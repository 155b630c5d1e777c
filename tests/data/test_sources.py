"""Sources of sharp clips: reflection at clip edges, aligned crops, errors, video cache,
dispatch by config (the synthetic camera: test_synthetic.py)."""

import os
import pathlib
import shutil

import numpy as np
import pytest

from clarity_jax.data import frames
from clarity_jax.data import sources
from clarity_jax.data import synthetic

# ------------------------------------------------------------------ helpers


def coordinate_frame(h: int, w: int, value: float) -> np.ndarray:
  """R = x / 255, G = y / 255, B = value: a crop tells exactly where it came from."""
  ys, xs = np.mgrid[0:h, 0:w]
  return np.stack([xs / 255.0, ys / 255.0, np.full((h, w), value)], -1).astype(np.float32)


def write_clip(root: pathlib.Path, name: str, n: int, h: int = 20, w: int = 24,
               base: int = 0) -> list:
  """Frame i of the clip has B = (base + 10 * i + 10) / 255."""
  (root / name).mkdir(parents=True)
  out = []
  for i in range(n):
    img = coordinate_frame(h, w, (base + 10 * i + 10) / 255.0)
    frames.write_image(root / name / f'{i:04d}.png', img)
    out.append(img)
  return out


def frame_ids(window: np.ndarray, base: int = 0) -> list[int]:
  """The frame index each window frame came from (see write_clip)."""
  return [(int(round(v * 255.0)) - base) // 10 - 1 for v in window[:, 0, 0, 2]]


# ------------------------------------------------------------ window indices


@pytest.mark.parametrize('length', [2, 3, 5, 8])
def test_reflect_indices_match_numpy_reflect_padding(length):
  pad = 3 * length
  reference = np.pad(np.arange(length), pad, mode='reflect')  # index -pad .. length+pad-1
  indices = np.arange(-pad, length + pad)
  np.testing.assert_array_equal(sources.reflect_indices(indices, length), reference)


def test_reflect_indices_single_frame_clip():
  np.testing.assert_array_equal(sources.reflect_indices(np.arange(-3, 4), 1), np.zeros(7))


def test_window_offsets():
  np.testing.assert_array_equal(sources.WindowSpec(5, 8).offsets, [-2, -1, 0, 1, 2])
  np.testing.assert_array_equal(sources.WindowSpec(6, 8).offsets, [-2, -1, 0, 1, 2, 3])
  np.testing.assert_array_equal(sources.WindowSpec(1, 8).offsets, [0])


# ------------------------------------------------------------ frame folders


def test_frame_folder_windows_are_consecutive_and_crops_aligned(tmp_path):
  write_clip(tmp_path, 'a', 9, h=20, w=24)
  spec = sources.WindowSpec(num_frames=5, crop=8, align=4)
  src = sources.FrameFolderSource(tmp_path, spec)
  assert src.names == ['a'] and list(src.lengths) == [9] and src.sizes == [(20, 24)]
  origins = set()
  for i in range(24):
    window = src.sample(np.random.default_rng([7, i]))
    assert window.shape == (5, 8, 8, 3) and window.dtype == np.float32
    ids = frame_ids(window)
    centre = ids[2]
    np.testing.assert_array_equal(ids, sources.reflect_indices(centre + np.arange(-2, 3), 9))
    x0, y0 = (int(round(v * 255)) for v in window[0, 0, 0, :2])
    assert x0 % 4 == 0 and y0 % 4 == 0
    # Every frame is the same crop of the same place.
    expected = coordinate_frame(20, 24, 0)[y0:y0 + 8, x0:x0 + 8, :2]
    np.testing.assert_allclose(window[..., :2], np.broadcast_to(expected, (5, 8, 8, 2)),
                               atol=1e-6)
    origins.add((y0, x0))
  assert len(origins) > 3  # random crops, not one fixed place


def test_short_clip_is_reflected_and_warns_once(tmp_path):
  write_clip(tmp_path, 'long', 6)
  write_clip(tmp_path, 'short', 2, base=150)
  spec = sources.WindowSpec(num_frames=5, crop=8, align=2)
  with pytest.warns(sources.ShortClipWarning, match=r'short.*2 frames.*5-frame') as record:
    src = sources.FrameFolderSource(tmp_path, spec)
  assert len(record) == 1 and str(tmp_path / 'short') in str(record[0].message)
  seen = set()
  for i in range(40):
    window = src.sample(np.random.default_rng([1, i]))
    if window[0, 0, 0, 2] > 150 / 255:  # from the 2-frame clip
      seen.add(tuple(frame_ids(window, base=150)))
  # Reflection without repeating the edge frame: 0 1 0 1 0 or 1 0 1 0 1.
  assert seen == {(0, 1, 0, 1, 0), (1, 0, 1, 0, 1)}


def test_mixed_frame_sizes_name_the_file(tmp_path):
  write_clip(tmp_path, 'clip', 3, h=20, w=24)
  odd = tmp_path / 'clip' / '0003.png'
  frames.write_image(odd, np.zeros((20, 30, 3), np.float32))
  with pytest.raises(frames.FrameError) as info:
    sources.FrameFolderSource(tmp_path, sources.WindowSpec(3, 8))
  message = str(info.value)
  assert message.startswith(str(odd)) and '30x20' in message and '\n' not in message


def test_frames_smaller_than_crop_name_the_clip(tmp_path):
  write_clip(tmp_path, 'tiny', 3, h=12, w=12)
  with pytest.raises(sources.SourceError, match=r'^' + str(tmp_path / 'tiny') + r': .*12x12'):
    sources.FrameFolderSource(tmp_path, sources.WindowSpec(3, 16))


def test_corrupt_frame_is_reported_with_its_path(tmp_path):
  write_clip(tmp_path, 'clip', 3)
  bad = tmp_path / 'clip' / '0001.png'
  bad.write_bytes(bad.read_bytes()[:60])  # header intact, pixels truncated
  src = sources.FrameFolderSource(tmp_path, sources.WindowSpec(3, 8))
  with pytest.raises(frames.FrameError, match='^' + str(bad)):
    for i in range(20):
      src.sample(np.random.default_rng(i))


# ------------------------------------------------------------------- video


def test_video_source_decodes_once_into_npy_memmaps(tmp_path, write_video):
  rng = np.random.default_rng(0)
  video = (rng.random((7, 32, 48, 3)) * 200 + 20).astype(np.uint8)
  (tmp_path / 'in').mkdir()
  # Nearly lossless H.264 (4:4:4, crf 0) so decoded pixels can be compared.
  write_video(tmp_path / 'in' / 'clip.mp4', video, 10, pix_fmt='yuv444p', crf=0)
  cache = tmp_path / 'cache'
  src = sources.VideoSource(tmp_path / 'in', sources.WindowSpec(3, 16, 4), cache_dir=cache)
  assert src.names == ['clip'] and list(src.lengths) == [7] and src.sizes == [(32, 48)]
  (cached,) = list(cache.iterdir())
  decoded = np.load(cached, allow_pickle=False)
  assert decoded.dtype == np.uint8 and decoded.shape == video.shape
  assert np.abs(decoded.astype(int) - video).max() <= 3  # RGB <-> YUV rounding only
  # A window is the reflected frames of one aligned crop.
  window = src.sample(np.random.default_rng(3))
  matches = [(t, y, x) for t in range(7) for y in range(0, 17, 4) for x in range(0, 33, 4)
             if np.allclose(window[1], decoded[t, y:y + 16, x:x + 16] / 255.0, atol=1e-6)]
  assert len(matches) == 1
  t, y, x = matches[0]
  expected = decoded[sources.reflect_indices(np.arange(t - 1, t + 2), 7), y:y + 16, x:x + 16]
  np.testing.assert_allclose(window, expected / 255.0, atol=1e-6)
  # Built again: the cache is reused, not decoded a second time.
  mtime = cached.stat().st_mtime_ns
  sources.VideoSource(tmp_path / 'in', sources.WindowSpec(3, 16, 4), cache_dir=cache)
  assert list(cache.iterdir()) == [cached] and cached.stat().st_mtime_ns == mtime


@pytest.mark.parametrize('content,problem', [(b'', 'empty file'),
                                             (b'not a video at all' * 20, 'cannot decode')])
def test_unreadable_video_is_one_line_naming_the_file(tmp_path, content, problem):
  bad = tmp_path / 'bad.mp4'
  bad.write_bytes(content)
  with pytest.raises(sources.SourceError) as info:
    sources.VideoSource(tmp_path, sources.WindowSpec(1, 8), cache_dir=tmp_path / 'cache')
  assert str(info.value).startswith(f'{bad}: {problem}') and '\n' not in str(info.value)
  assert not [p for p in (tmp_path / 'cache').iterdir()]  # nothing half-written left


def test_real_video_clip(shared_data, tmp_path):
  """A real H.264 clip from ../shared/data, if present: decodes, windows in range."""
  folder = tmp_path / 'videos'
  folder.mkdir()
  os.symlink(shared_data / 'video' / 'coffee_1280x720.mp4', folder / 'coffee.mp4')
  cache = tmp_path / 'cache'
  try:
    src = sources.VideoSource(folder, sources.WindowSpec(5, 64, 4), cache_dir=cache)
    assert src.sizes == [(720, 1280)] and src.lengths[0] > 250
    window = src.sample(np.random.default_rng(0))
    assert window.shape == (5, 64, 64, 3) and 0.0 <= window.min() and window.max() <= 1.0
  finally:
    shutil.rmtree(cache)  # ~0.8 GB of decoded frames: not left to pytest's tmp retention


# -------------------------------------------------------------- dispatch


def test_make_source_by_config(tmp_path, tiny_config):
  write_clip(tmp_path / 'train', 'a', 4)
  write_clip(tmp_path / 'val', 'b', 4)
  cfg = tiny_config(**{'data.source': 'frame_folders', 'data.path': str(tmp_path / 'train'),
                       'data.val_path': str(tmp_path / 'val')})
  spec = sources.WindowSpec(3, 8, 2)
  assert sources.make_source(cfg, spec).names == ['a']
  assert sources.make_source(cfg, spec, split='validation').names == ['b']
  cfg.data.val_path = ''
  assert isinstance(sources.make_source(cfg, spec, split='validation'), synthetic.SyntheticSource)
  cfg.data.source = 'nope'
  with pytest.raises(ValueError, match='config.data.source'):
    sources.make_source(cfg, spec)
