"""Frame I/O: conversions on read, atomic writes, clip listing, one-line errors naming the file."""

import logging
import os
from pathlib import Path

import cv2
import numpy as np
from PIL import Image
import pytest

from clarity_jax.media import frames


def _rgb(h=12, w=16, seed=0) -> np.ndarray:
  return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def _write_png(path: Path, rgb: np.ndarray) -> Path:
  Image.fromarray(rgb).save(path)
  return path


def _assert_error(excinfo, path: Path, words: str) -> None:
  message = str(excinfo.value)
  assert message.startswith(f'{path}: '), message
  assert words in message and '\n' not in message


def test_png_round_trip_is_exact_and_jpeg_is_close(tmp_path):
  rgb = _rgb()
  img = rgb.astype(np.float32) / 255
  frames.write_image(tmp_path / 'a.png', img)
  back = frames.read_image(tmp_path / 'a.png')
  assert back.dtype == np.float32 and back.shape == (12, 16, 3)
  np.testing.assert_array_equal(back, img)
  np.testing.assert_array_equal(np.asarray(Image.open(tmp_path / 'a.png')), rgb)  # RGB order
  frames.write_image(tmp_path / 'u.png', rgb)  # uint8 is written as is
  np.testing.assert_array_equal(frames.read_image(tmp_path / 'u.png'), img)
  smooth = np.linspace(0, 1, 64 * 64 * 3, dtype=np.float32).reshape(64, 64, 3)
  frames.write_image(tmp_path / 'a.jpg', smooth, jpeg_quality=95)
  assert np.abs(frames.read_image(tmp_path / 'a.jpg') - smooth).mean() < 0.01
  assert sorted(p.name for p in tmp_path.iterdir()) == ['a.jpg', 'a.png', 'u.png']  # no temp


def test_grayscale_palette_and_alpha_become_rgb(tmp_path):
  rgb = _rgb()
  gray = rgb[..., 0]
  Image.fromarray(gray, 'L').save(tmp_path / 'l.png')
  Image.fromarray(np.dstack([gray, gray[::-1]]), 'LA').save(tmp_path / 'la.png')
  Image.fromarray(np.dstack([rgb, 255 - rgb[..., :1]]), 'RGBA').save(tmp_path / 'rgba.png')
  Image.fromarray(rgb).convert('P').save(tmp_path / 'p.png')
  for name in ('l.png', 'la.png'):
    out = frames.read_image(tmp_path / name)
    assert out.shape == (12, 16, 3)
    for c in range(3):
      np.testing.assert_array_equal(out[..., c], gray / np.float32(255))
  np.testing.assert_array_equal(frames.read_image(tmp_path / 'rgba.png'), rgb / np.float32(255))
  palette = np.asarray(Image.open(tmp_path / 'p.png').convert('RGB')) / np.float32(255)
  np.testing.assert_array_equal(frames.read_image(tmp_path / 'p.png'), palette)


def test_16_bit_pngs_keep_their_precision(tmp_path):
  values = np.random.default_rng(0).integers(0, 65536, (10, 14, 3), dtype=np.uint16)
  values[0, :3, 0] = [1000, 1001, 1002]  # one 16-bit level apart: the same 8-bit value
  cv2.imwrite(str(tmp_path / 'c16.png'), values[..., ::-1])  # cv2 writes BGR
  cv2.imwrite(str(tmp_path / 'g16.png'), values[..., 0])
  out = frames.read_image(tmp_path / 'c16.png')
  np.testing.assert_allclose(out, values / 65535.0, atol=1e-7)
  assert len(np.unique(out[0, :3, 0])) == 3
  gray = frames.read_image(tmp_path / 'g16.png')
  np.testing.assert_allclose(gray[..., 2], values[..., 0] / 65535.0, atol=1e-7)


def test_broken_files_raise_one_line_naming_the_file(tmp_path):
  empty = tmp_path / 'empty.png'
  empty.touch()
  with pytest.raises(frames.FrameError) as e:
    frames.read_image(empty)
  _assert_error(e, empty, 'empty file')
  for name in ('t.png', 't.jpg'):
    good = tmp_path / f'good{Path(name).suffix}'
    frames.write_image(good, _rgb(64, 64))
    data = good.read_bytes()
    (tmp_path / name).write_bytes(data[:len(data) * 2 // 3])
    with pytest.raises(frames.FrameError) as e:
      frames.read_image(tmp_path / name)
    _assert_error(e, tmp_path / name, 'not a readable image')
  junk = tmp_path / 'junk.png'
  junk.write_text('this is not an image')
  with pytest.raises(frames.FrameError) as e:
    frames.read_image(junk)
  _assert_error(e, junk, 'not a readable image')
  with pytest.raises(frames.FrameError) as e:
    frames.read_image(tmp_path / 'missing.png')
  _assert_error(e, tmp_path / 'missing.png', 'cannot read')
  assert isinstance(e.value, ValueError)


def test_decode_image_reads_bytes_as_read_image_reads_the_file(tmp_path):
  """A frame kept as bytes (a dataset record) decodes to the file's pixels: 16-bit,
  EXIF orientation; errors name the record."""
  values = np.random.default_rng(1).integers(0, 65536, (10, 14, 3), dtype=np.uint16)
  cv2.imwrite(str(tmp_path / 'c16.png'), values)
  exif = Image.Exif()
  exif[0x0112] = 6  # turned: stored 12x20, shown 20x12
  Image.fromarray(_rgb(12, 20, seed=2)).save(tmp_path / 'turned.jpg', exif=exif, quality=95)
  for path in (tmp_path / 'c16.png', tmp_path / 'turned.jpg'):
    np.testing.assert_array_equal(frames.decode_image(path.read_bytes(), 'record'),
                                  frames.read_image(path))
  assert frames.decode_image((tmp_path / 'turned.jpg').read_bytes(), 'r').shape == (20, 12, 3)
  data = (tmp_path / 'c16.png').read_bytes()
  for broken, words in ((b'', 'empty file'), (data[:len(data) // 2], 'not a readable image'),
                        (b'not an image', 'not a readable image')):
    with pytest.raises(frames.FrameError) as e:
      frames.decode_image(broken, 'ds:clip[3]')
    _assert_error(e, 'ds:clip[3]', words)


def test_write_is_atomic_and_validates(tmp_path, monkeypatch):
  target = tmp_path / 'f.png'
  frames.write_image(target, _rgb(seed=1))
  before = target.read_bytes()

  def failing_replace(src, dst):
    raise OSError(28, 'No space left on device')
  monkeypatch.setattr(os, 'replace', failing_replace)
  with pytest.raises(frames.FrameError) as e:
    frames.write_image(target, _rgb(seed=2))
  _assert_error(e, target, 'cannot write')
  monkeypatch.undo()
  assert target.read_bytes() == before  # the old frame is intact
  assert [p.name for p in tmp_path.iterdir()] == ['f.png']  # and no temp file is left
  with pytest.raises(frames.FrameError) as e:
    frames.write_image(tmp_path / 'f.gif', _rgb())
  _assert_error(e, tmp_path / 'f.gif', 'unsupported image extension')
  with pytest.raises(frames.FrameError) as e:
    frames.write_image(tmp_path / 'g.png', np.zeros((4, 4, 2)))
  _assert_error(e, tmp_path / 'g.png', 'expected an [H, W, 3]')


def _clip(folder: Path, names, size=(6, 8)) -> None:
  folder.mkdir(parents=True)
  for i, name in enumerate(names):
    _write_png(folder / name, _rgb(*size, seed=i))


def test_list_clips_for_a_tree_and_for_one_clip_folder(tmp_path, caplog):
  root = tmp_path / 'hr'
  _clip(root / 'clip10', ['f9.png', 'f10.png', 'f1.png'])
  _clip(root / 'clip2', ['000.jpg', '001.png'])
  (root / 'clip2' / '.hidden.png').write_bytes(b'')
  (root / 'clip2' / 'notes.csv').write_text('x')
  (root / 'degradation.json').write_text('{}')  # a sidecar beside the clips is fine
  with caplog.at_level(logging.WARNING):
    clips = frames.list_clips(root)
  assert list(clips) == ['clip2', 'clip10']  # natural order
  assert [p.name for p in clips['clip10']] == ['f1.png', 'f9.png', 'f10.png']
  assert [p.name for p in clips['clip2']] == ['000.jpg', '001.png']
  assert 'notes.csv' in caplog.text  # ignored, but not silently
  single = frames.list_clips(root / 'clip10')
  assert list(single) == ['clip10'] and len(single['clip10']) == 3


def test_list_clips_errors(tmp_path):
  with pytest.raises(frames.FrameError) as e:
    frames.list_clips(tmp_path / 'nope')
  _assert_error(e, tmp_path / 'nope', 'no such folder')
  (tmp_path / 'empty').mkdir()
  with pytest.raises(frames.FrameError) as e:
    frames.list_clips(tmp_path / 'empty')
  _assert_error(e, tmp_path / 'empty', 'no frames')
  root = tmp_path / 'hr'
  _clip(root / 'a', ['0.png'])
  (root / 'b').mkdir()
  with pytest.raises(frames.FrameError) as e:
    frames.list_clips(root)
  _assert_error(e, root / 'b', 'clip folder has no frames')
  (root / 'b').rmdir()
  _write_png(root / 'stray.png', _rgb())
  with pytest.raises(frames.FrameError) as e:
    frames.list_clips(root)
  _assert_error(e, root, 'both frames')


def test_check_clip_sizes(tmp_path):
  clip = tmp_path / 'c'
  _clip(clip, ['0.png', '1.png'], size=(6, 8))
  _write_png(clip / '2.png', _rgb(6, 9))
  paths = sorted(clip.iterdir())
  assert frames.check_clip_sizes('c', paths[:2]) == (6, 8)
  with pytest.raises(frames.FrameError) as e:
    frames.check_clip_sizes('c', paths)
  _assert_error(e, clip / '2.png', 'size 9x6 differs from 8x6')
  (clip / '1.png').write_bytes(b'')
  with pytest.raises(frames.FrameError) as e:
    frames.check_clip_sizes('c', paths)
  _assert_error(e, clip / '1.png', 'empty file')


def test_frame_error_takes_a_ready_message():
  assert str(frames.FrameError('/x/y.png: broken')) == '/x/y.png: broken'
  err = frames.FrameError('/x/y.png', 'broken')
  assert str(err) == '/x/y.png: broken' and err.path == Path('/x/y.png')


def test_a_decompression_bomb_is_refused_unread(tmp_path):
  """380 kB of PNG declaring 20000x20000 pixels (4.8 GB as float32): one line, from the
  header, before any decoding."""
  import struct  # pylint: disable=g-import-not-at-top
  import zlib  # pylint: disable=g-import-not-at-top
  w = h = 20000
  def chunk(kind, data):
    return (struct.pack('>I', len(data)) + kind + data
            + struct.pack('>I', zlib.crc32(kind + data) & 0xffffffff))
  rows = zlib.compress(b''.join(b'\x00' + bytes(w) for _ in range(h)), 9)
  bomb = tmp_path / 'bomb.png'
  bomb.write_bytes(b'\x89PNG\r\n\x1a\n' + chunk(b'IHDR', struct.pack('>IIBBBBB', w, h, 8, 0, 0,
                                                                     0, 0))
                   + chunk(b'IDAT', rows) + chunk(b'IEND', b''))
  message = (f'{bomb}: 20000x20000 is 400 megapixels, over the 100-megapixel limit '
             '(a decompression bomb?)')
  for read in (frames.image_size, frames.read_image):
    with pytest.raises(frames.FrameError) as e:
      read(bomb)
    assert str(e.value) == message


@pytest.mark.parametrize('ext', ['.png', '.jpg'])
def test_exif_orientation_is_applied(tmp_path, ext):
  """Phone pictures store sensor rows with an EXIF orientation tag: read upright,
  as PIL's exif_transpose shows them, and sized upright from the header alone."""
  from PIL import ImageOps  # pylint: disable=g-import-not-at-top
  rgb = _rgb(12, 20, seed=3)
  for orientation in range(1, 9):
    path = tmp_path / f'o{orientation}{ext}'
    exif = Image.Exif()
    exif[0x0112] = orientation
    Image.fromarray(rgb).save(path, exif=exif, quality=100)
    with Image.open(path) as im:
      want = np.asarray(ImageOps.exif_transpose(im).convert('RGB'), np.float32) / 255
    got = frames.read_image(path)
    assert frames.image_size(path) == got.shape[:2] == want.shape[:2], orientation
    np.testing.assert_allclose(got, want, atol=(0 if ext == '.png' else 3 / 255) + 1e-6,
                               err_msg=f'orientation {orientation}')
