"""Sources of sharp clips: reflection at clip edges, aligned crops, errors, video cache,
synthetic camera motion that is not global."""

import os
import pathlib
import shutil

import cv2
import numpy as np
import pytest

from clarity_jax.data import frames
from clarity_jax.data import sources
from conftest import tiny_config
import test_video_io

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


def write_video(path: pathlib.Path, video: np.ndarray, fps: int = 10) -> None:
  """Nearly lossless H.264 (4:4:4, crf 0) so decoded pixels can be compared."""
  test_video_io.write_video(path, video, fps, pix_fmt='yuv444p', crf=0)


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


def test_video_source_decodes_once_into_npy_memmaps(tmp_path):
  rng = np.random.default_rng(0)
  video = (rng.random((7, 32, 48, 3)) * 200 + 20).astype(np.uint8)
  (tmp_path / 'in').mkdir()
  write_video(tmp_path / 'in' / 'clip.mp4', video)
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


# -------------------------------------------------------------- synthetic


def test_photo_split_is_fixed_and_disjoint():
  assert set(sources.TRAIN_PHOTOS).isdisjoint(sources.VALIDATION_PHOTOS)
  assert len(sources.TRAIN_PHOTOS) >= 8 and len(sources.VALIDATION_PHOTOS) >= 2
  cfg = tiny_config()
  spec = sources.WindowSpec(3, 32, 2)
  train = sources.make_source(cfg, spec, split='train')
  val = sources.make_source(cfg, spec, split='validation')
  assert tuple(train.names) == sources.TRAIN_PHOTOS
  assert tuple(val.names) == sources.VALIDATION_PHOTOS


def test_gray_photographs_become_rgb():
  camera = sources.load_photo('camera')
  assert camera.shape == (512, 512, 3) and camera.dtype == np.float32
  np.testing.assert_array_equal(camera[..., 0], camera[..., 2])
  import skimage.data  # pylint: disable=g-import-not-at-top
  np.testing.assert_allclose(camera[..., 1], skimage.data.camera() / 255.0, atol=1e-7)


def test_synthetic_windows_are_a_function_of_the_rng():
  src = sources.SyntheticSource(sources.load_photos('train'), sources.WindowSpec(5, 48, 4), 30)
  a = src.sample(np.random.default_rng([0, 5]))
  b = src.sample(np.random.default_rng([0, 5]))
  c = src.sample(np.random.default_rng([0, 6]))
  assert a.shape == (5, 48, 48, 3) and a.dtype == np.float32
  assert 0.0 <= a.min() and a.max() <= 1.0
  np.testing.assert_array_equal(a, b)
  assert not np.allclose(a, c)
  assert np.abs(a[1:] - a[:-1]).mean() > 1e-3  # the camera moves


def _phase_shift(a: np.ndarray, b: np.ndarray) -> np.ndarray:
  window = cv2.createHanningWindow(a.shape[::-1], cv2.CV_64F)
  (dx, dy), _ = cv2.phaseCorrelate(a.astype(np.float64), b.astype(np.float64), window)
  return np.array([dx, dy])


def _largest_square(mask: np.ndarray) -> tuple[int, int, int]:
  """(y, x, side) of the largest all-True square in a boolean mask."""
  dp = np.zeros((mask.shape[0] + 1, mask.shape[1] + 1), np.int32)
  for y, x in zip(*np.nonzero(mask)):
    dp[y + 1, x + 1] = 1 + min(dp[y, x + 1], dp[y + 1, x], dp[y, x])
  side = int(dp.max())
  y, x = np.unravel_index(dp.argmax(), dp.shape)
  return y - side, x - side, side


def _translate(img: np.ndarray, d: np.ndarray) -> np.ndarray:
  m = np.array([[1, 0, d[0]], [0, 1, d[1]]], np.float64)
  return cv2.warpAffine(img, m, img.shape[::-1], flags=cv2.INTER_CUBIC,
                        borderMode=cv2.BORDER_REFLECT_101)


def test_synthetic_motion_is_not_global():
  """Phase correlation on rendered frames: the object moves unlike the background.

  Textured photographs only, so that both motions are measurable.
  """
  photos = {n: sources.load_photo(n) for n in ('gravel', 'brick', 'grass', 'astronaut')}
  src = sources.SyntheticSource(photos, sources.WindowSpec(2, 96, 4), frames_per_clip=30)
  for i in range(10):
    window, masks = src.sample_with_masks(np.random.default_rng([1, i]))
    gray = window.mean(-1)
    background = np.maximum(masks[0], masks[1]) < 1e-3
    y, x, side = _largest_square(background)
    assert side >= 24
    d_background = _phase_shift(gray[0, y:y + side, x:x + side],
                                gray[1, y:y + side, x:x + side])
    d_object = _phase_shift(masks[0], masks[1])
    assert np.linalg.norm(d_object - d_background) > 1.0, (i, d_object, d_background)
    # The object's texture moves with its mask, not with the background.
    inside = cv2.erode((np.minimum(masks[0], masks[1]) > 0.999).astype(np.uint8),
                       np.ones((5, 5), np.uint8)).astype(bool)
    err_object = np.abs(_translate(gray[0], d_object) - gray[1])[inside].mean()
    err_background = np.abs(_translate(gray[0], d_background) - gray[1])[inside].mean()
    assert err_object < err_background, (i, err_object, err_background)


def test_synthetic_frames_stay_sharp():
  """Rendering (bicubic, zoom only ever shrinking) keeps the photograph's detail:
  high-frequency energy close to the photo's, far above a lightly blurred render."""
  photo = sources.load_photo('astronaut')
  src = sources.SyntheticSource({'astronaut': photo}, sources.WindowSpec(1, 128, 4), 30)
  lap = lambda img: cv2.Laplacian(img.mean(-1), cv2.CV_32F).var()
  rendered = np.mean([lap(src.sample(np.random.default_rng(i))[0]) for i in range(8)])
  blurred = np.mean([lap(cv2.GaussianBlur(src.sample(np.random.default_rng(i))[0], (0, 0), 1.0))
                     for i in range(8)])
  assert rendered > 0.6 * lap(photo)
  assert rendered > 3 * blurred


def test_photographs_smaller_than_the_crop_are_an_error():
  with pytest.raises(sources.SourceError, match='smaller than the 600x600 HR crop'):
    sources.SyntheticSource(sources.load_photos('validation'), sources.WindowSpec(3, 600), 30)


# -------------------------------------------------------------- dispatch


def test_make_source_by_config(tmp_path):
  write_clip(tmp_path / 'train', 'a', 4)
  write_clip(tmp_path / 'val', 'b', 4)
  cfg = tiny_config(**{'data.source': 'frame_folders', 'data.path': str(tmp_path / 'train'),
                       'data.val_path': str(tmp_path / 'val')})
  spec = sources.WindowSpec(3, 8, 2)
  assert sources.make_source(cfg, spec).names == ['a']
  assert sources.make_source(cfg, spec, split='validation').names == ['b']
  cfg.data.val_path = ''
  assert isinstance(sources.make_source(cfg, spec, split='validation'), sources.SyntheticSource)
  cfg.data.source = 'nope'
  with pytest.raises(ValueError, match='config.data.source'):
    sources.make_source(cfg, spec)
