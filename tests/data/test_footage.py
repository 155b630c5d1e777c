"""Real footage, the one source of real clips: videos and frame folders decoded once
into the per-user cache (never beside the footage), read as frames.read_image reads
them, area-downscaled on request, refusing cache files of other users."""

import os
import shutil

import cv2
import numpy as np
import pytest

from clarity_jax import errors
from clarity_jax import files
from clarity_jax.data import footage
from clarity_jax.data import source_base
from clarity_jax.media import frames
from clarity_jax.media import temporal


# ------------------------------------------------------------------- video


def test_a_folder_of_videos_decodes_once_into_npy_memmaps(tmp_path, write_video):
  rng = np.random.default_rng(0)
  video = (rng.random((7, 32, 48, 3)) * 200 + 20).astype(np.uint8)
  (tmp_path / 'in').mkdir()
  # Nearly lossless H.264 (4:4:4, crf 0) so decoded pixels can be compared.
  write_video(tmp_path / 'in' / 'clip.mp4', video, 10, pix_fmt='yuv444p', crf=0)
  cache = tmp_path / 'cache'
  src = footage.FootageSource([tmp_path / 'in'], source_base.WindowSpec(3, 16, 4), cache_dir=cache)
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
  expected = decoded[temporal.reflect_indices(np.arange(t - 1, t + 2), 7), y:y + 16, x:x + 16]
  np.testing.assert_allclose(window, expected / 255.0, atol=1e-6)
  # Built again: the cache is reused, not decoded a second time.
  mtime = cached.stat().st_mtime_ns
  footage.FootageSource([tmp_path / 'in'], source_base.WindowSpec(3, 16, 4), cache_dir=cache)
  assert list(cache.iterdir()) == [cached] and cached.stat().st_mtime_ns == mtime


@pytest.mark.parametrize('content,problem', [(b'', 'empty file'),
                                             (b'not a video at all' * 20, 'not a readable video')])
def test_unreadable_video_is_one_line_naming_the_file(tmp_path, content, problem):
  bad = tmp_path / 'bad.mp4'
  bad.write_bytes(content)
  with pytest.raises(errors.PathError) as info:  # media's reader's error, as enhance's
    footage.FootageSource([tmp_path], source_base.WindowSpec(1, 8), cache_dir=tmp_path / 'cache')
  assert str(info.value).startswith(f'{bad}: {problem}') and '\n' not in str(info.value)
  assert not [p for p in (tmp_path / 'cache').iterdir()]  # nothing half-written left


def test_real_video_clip(shared_data, tmp_path):
  """A real H.264 clip from ../shared/data, if present: decodes, windows in range."""
  folder = tmp_path / 'videos'
  folder.mkdir()
  os.symlink(shared_data / 'video' / 'coffee_1280x720.mp4', folder / 'coffee.mp4')
  cache = tmp_path / 'cache'
  try:
    src = footage.FootageSource([folder], source_base.WindowSpec(5, 64, 4), cache_dir=cache)
    assert src.sizes == [(720, 1280)] and src.lengths[0] > 250
    window = src.sample(np.random.default_rng(0))
    assert window.shape == (5, 64, 64, 3) and 0.0 <= window.min() and window.max() <= 1.0
  finally:
    shutil.rmtree(cache)  # ~0.8 GB of decoded frames: not left to pytest's tmp retention


# ------------------------------------------------------------- frame folders


def _write_frames(folder, images, ext: str) -> list:
  folder.mkdir(parents=True)
  for t, img in enumerate(images):
    frames.write_image(folder / f'{t:03d}{ext}', img)
  return sorted(folder.iterdir())


def test_frame_folders_read_the_pixels_read_image_reads(tmp_path):
  """Windows of frame folders (8-bit PNG, JPEG, gray PNG) hold exactly the pixels that
  frames.read_image gives for those frames: the cache changes nothing."""
  rng = np.random.default_rng(2)
  root = tmp_path / 'clips'
  paths = {'png': _write_frames(root / 'png', rng.random((4, 20, 24, 3)), '.png'),
           'jpg': _write_frames(root / 'jpg', rng.random((3, 20, 24, 3)), '.jpg'),
           'gray': _write_frames(root / 'gray', rng.random((3, 20, 24)), '.png')}
  before = sorted(p for p in tmp_path.rglob('*'))
  src = footage.FootageSource([root], source_base.WindowSpec(3, 8, 2),
                              cache_dir=tmp_path / 'cache')
  # The cache is where it was asked to be; the footage folders are untouched.
  assert sorted(p for p in tmp_path.rglob('*') if 'cache' not in p.parts) == before
  assert len(list((tmp_path / 'cache').iterdir())) == 3
  read = {name: np.stack([frames.read_image(p) for p in clip]) for name, clip in paths.items()}
  assert src.names == ['gray', 'jpg', 'png'] and src.sizes == [(20, 24)] * 3
  found = set()
  for i in range(30):
    window = src.sample(np.random.default_rng(i))
    assert window.dtype == np.float32
    hits = [(name, t, y, x) for name, clip in read.items() for t in range(len(clip))
            for y in range(0, 13, 2) for x in range(0, 17, 2)
            if np.array_equal(window[1], clip[t, y:y + 8, x:x + 8])]
    assert len(hits) == 1, i
    name, t, y, x = hits[0]
    clip = read[name]
    want = clip[temporal.reflect_indices(np.arange(t - 1, t + 2), len(clip)), y:y + 8, x:x + 8]
    np.testing.assert_array_equal(window, want)
    found.add(name)
  assert found == set(read)


def test_the_cache_defaults_to_the_users_cache_folder(tmp_path, monkeypatch):
  monkeypatch.setenv('XDG_CACHE_HOME', str(tmp_path / 'home_cache'))
  _write_frames(tmp_path / 'clip', np.zeros((2, 8, 8, 3)), '.png')
  footage.FootageSource([tmp_path / 'clip'], source_base.WindowSpec(1, 8))
  (cached,) = (tmp_path / 'home_cache' / 'clarity_jax' / 'video').iterdir()
  assert cached.name.startswith('clip-') and cached.suffix == '.npy'
  assert sorted(p.name for p in (tmp_path / 'clip').iterdir()) == ['000.png', '001.png']


def test_mixed_frame_sizes_name_the_file(tmp_path):
  _write_frames(tmp_path / 'clips' / 'clip', np.zeros((3, 20, 24, 3)), '.png')
  odd = tmp_path / 'clips' / 'clip' / '003.png'
  frames.write_image(odd, np.zeros((20, 30, 3), np.float32))
  with pytest.raises(frames.FrameError) as info:
    footage.FootageSource([tmp_path / 'clips'], source_base.WindowSpec(3, 8),
                          cache_dir=tmp_path / 'cache')
  message = str(info.value)
  assert message.startswith(str(odd)) and '30x20' in message and '\n' not in message


def test_a_corrupt_frame_stops_the_source_naming_it_and_caches_nothing(tmp_path):
  _write_frames(tmp_path / 'clips' / 'clip', np.zeros((3, 20, 24, 3)), '.png')
  bad = tmp_path / 'clips' / 'clip' / '001.png'
  bad.write_bytes(bad.read_bytes()[:60])  # header intact, pixels truncated
  with pytest.raises(frames.FrameError, match='^' + str(bad) + ': not a readable image'):
    footage.FootageSource([tmp_path / 'clips'], source_base.WindowSpec(3, 8),
                          cache_dir=tmp_path / 'cache')
  assert not list((tmp_path / 'cache').iterdir())


# ------------------------------------------------------------------- footage


def test_footage_mixes_videos_and_frame_folders_downscaled(tmp_path, write_video, png_clips):
  rng = np.random.default_rng(1)
  video = (rng.random((6, 32, 48, 3)) * 200 + 20).astype(np.uint8)
  write_video(tmp_path / 'a.mp4', video, 10, pix_fmt='yuv444p', crf=0)
  png_clips(tmp_path / 'frames', {'b': 5}, size=(24, 40), seed=2)
  cache = tmp_path / 'cache'
  src = footage.FootageSource([tmp_path / 'a.mp4', tmp_path / 'frames'],
                              source_base.WindowSpec(3, 8, 2), cache_dir=cache, downscale=2)
  assert src.names == ['a', 'b'] and list(src.lengths) == [6, 5]
  assert src.sizes == [(16, 24), (12, 20)]
  cached = {p.name.split('-x2-')[0]: np.load(p, allow_pickle=False) for p in cache.iterdir()}
  # Frames are the 2x area average (OpenCV INTER_AREA on uint8) of what was read.
  first = frames.read_image(sorted((tmp_path / 'frames' / 'b').iterdir())[0])
  want = cv2.resize(files.to_uint8(first), (20, 12), interpolation=cv2.INTER_AREA)
  np.testing.assert_array_equal(cached['b'][0], want)
  block = video[0].astype(float).reshape(16, 2, 24, 2, 3).mean(axis=(1, 3))
  assert np.abs(cached['a'][0] - block).max() <= 4  # codec rounding only


def test_footage_refuses_a_cache_file_of_another_user(tmp_path, write_video):
  if os.getuid() != 0:
    pytest.skip('needs root to give a file to another user')
  write_video(tmp_path / 'a.mp4', np.zeros((3, 16, 16, 3), np.uint8), 10)
  cache = tmp_path / 'cache'
  footage.FootageSource([tmp_path / 'a.mp4'], source_base.WindowSpec(1, 8), cache_dir=cache)
  (cached,) = cache.iterdir()
  os.chown(cached, 12345, 12345)
  with pytest.raises(source_base.ClipError, match='another user') as info:
    footage.FootageSource([tmp_path / 'a.mp4'], source_base.WindowSpec(1, 8), cache_dir=cache)
  assert str(info.value).startswith(str(cached))


@pytest.mark.parametrize('make,problem', [
    (lambda d: d / 'missing.mp4', 'no such file or folder'),
    (lambda d: (d / 'notes.txt').write_text('x') and d / 'notes.txt', 'not a video'),
])
def test_footage_bad_paths_are_one_line(tmp_path, make, problem):
  path = make(tmp_path)
  with pytest.raises(source_base.ClipError) as info:
    footage.FootageSource([path], source_base.WindowSpec(1, 8), cache_dir=tmp_path / 'cache')
  assert str(info.value) == f'{path}: {problem}' or str(info.value).startswith(
      f'{path}: {problem}')
