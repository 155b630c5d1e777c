"""Streaming video / frame I/O: round trips through real codecs, and every bad input."""

import fractions
import os
import shutil
from pathlib import Path
import wave

import numpy as np
import pytest

from clarity_jax.media import frames
from clarity_jax.media import writers
from clarity_jax.media import video_writer
from clarity_jax.media import readers

FPS = fractions.Fraction(30000, 1001)  # write_video's default rate


def leftovers(folder: Path) -> list[str]:
  return sorted(p.name for p in folder.iterdir() if p.name.startswith('.'))


@pytest.mark.parametrize('ext', ['.mp4', '.mkv', '.mov', '.avi'])
def test_video_reader_streams_every_frame(tmp_path, smooth_frames, write_video, decode_all,
                                          ext, psnr):
  src = smooth_frames(7, 48, 64)
  path = write_video(tmp_path / f'clip{ext}', src)
  reader = readers.VideoReader(path)
  assert reader.size == (48, 64)
  assert reader.fps == FPS
  assert reader.num_frames == 7
  got = list(reader)
  assert len(got) == 7
  assert all(f.shape == (48, 64, 3) and f.dtype == np.float32 for f in got)
  # Same pixels as PyAV's own decode, and close to what was encoded.
  ref, _ = decode_all(path)
  np.testing.assert_array_equal(np.round(np.stack(got) * 255).astype(np.uint8), ref)
  assert psnr(ref, src, 255) > 35


def test_open_input_kinds(tmp_path, smooth_frames, write_video):
  video = write_video(tmp_path / 'v.mp4', smooth_frames(3, 16, 16))
  assert readers.open_input(video).kind == 'video'
  image = tmp_path / 'one.png'
  frames.write_image(image, np.zeros((8, 12, 3), np.float32))
  src = readers.open_input(image)
  assert (src.kind, list(src.clips), src.num_frames) == ('image', ['one'], 1)
  clip = tmp_path / 'clip'
  clip.mkdir()
  for i in (10, 9, 1):  # natural order: 1, 9, 10
    frames.write_image(clip / f'f{i}.png', np.zeros((8, 12, 3), np.float32))
  src = readers.open_input(clip)
  assert src.kind == 'frames' and src.clips['clip'].names == ['f1.png', 'f9.png', 'f10.png']
  root = tmp_path / 'root'
  (root / 'b').mkdir(parents=True)
  (root / 'a').mkdir()
  for d in ('a', 'b'):
    frames.write_image(root / d / '0.png', np.zeros((8, 12, 3), np.float32))
  src = readers.open_input(root)
  assert src.kind == 'clips' and list(src.clips) == ['a', 'b'] and src.num_frames == 2


def test_truncated_videos_are_errors_naming_the_file(tmp_path, smooth_frames, write_video):
  data = write_video(tmp_path / 'full.mp4', smooth_frames(12, 32, 32)).read_bytes()
  cut = tmp_path / 'cut.mp4'  # moov atom at the end: the header is gone
  cut.write_bytes(data[:len(data) * 6 // 10])
  with pytest.raises(readers.MediaError, match=rf'^{cut}: not a readable video'):
    readers.VideoReader(cut)
  # Matroska keeps its header at the front: the loss shows only while decoding.
  mkv = write_video(tmp_path / 'full.mkv', smooth_frames(12, 32, 32)).read_bytes()
  cut_mkv = tmp_path / 'cut.mkv'
  cut_mkv.write_bytes(mkv[:len(mkv) * 8 // 10])
  reader = readers.VideoReader(cut_mkv)
  with pytest.raises(readers.MediaError, match=rf'^{cut_mkv}: truncated video: decoded \d+ '
                     r'of the 12 frames'):
    list(reader)
  # Stopping early (--max_frames) is not a truncation.
  first = []
  for f in reader:
    first.append(f)
    if len(first) == 2:
      break
  assert len(first) == 2


def test_unknown_codec_junk_and_missing_files(tmp_path, smooth_frames, write_video):
  mkv = write_video(tmp_path / 'ok.mkv', smooth_frames(3, 16, 16)).read_bytes()
  assert mkv.count(b'V_MPEG4/ISO/AVC') == 1
  unknown = tmp_path / 'unknown.mkv'  # a codec id no FFmpeg decoder claims
  unknown.write_bytes(mkv.replace(b'V_MPEG4/ISO/AVC', b'V_QQQQQ/ISO/AVC'))
  with pytest.raises(readers.MediaError, match=rf'^{unknown}: unknown video codec'):
    readers.VideoReader(unknown)
  junk = tmp_path / 'junk.mp4'
  junk.write_bytes(b'not a video ' * 100)
  with pytest.raises(readers.MediaError, match=rf'^{junk}: not a readable video'):
    readers.open_input(junk)
  empty = tmp_path / 'empty.mov'
  empty.touch()
  with pytest.raises(readers.MediaError, match=rf'^{empty}: empty file'):
    readers.open_input(empty)
  with pytest.raises(readers.MediaError, match=rf'^{tmp_path / "nope.mp4"}: no such file'):
    readers.open_input(tmp_path / 'nope.mp4')
  text = tmp_path / 'notes.txt'
  text.write_text('x')
  with pytest.raises(readers.MediaError, match=rf"^{text}: unsupported input type '.txt'"):
    readers.open_input(text)


def test_audio_only_file_has_no_video_stream(tmp_path):
  path = tmp_path / 'sound.mkv'  # FFmpeg probes the content, not the name
  with wave.open(str(path), 'wb') as w:
    w.setnchannels(1)
    w.setsampwidth(2)
    w.setframerate(8000)
    w.writeframes(np.zeros(800, np.int16).tobytes())
  with pytest.raises(readers.MediaError, match=rf'^{path}: no video stream'):
    readers.VideoReader(path)


def test_empty_and_mixed_size_folders(tmp_path):
  empty = tmp_path / 'empty'
  empty.mkdir()
  with pytest.raises(frames.FrameError, match=rf'^{empty}: no frames'):
    readers.open_input(empty)
  mixed = tmp_path / 'mixed'
  mixed.mkdir()
  frames.write_image(mixed / '0.png', np.zeros((8, 12, 3), np.float32))
  frames.write_image(mixed / '1.png', np.zeros((8, 14, 3), np.float32))
  with pytest.raises(frames.FrameError, match=rf'^{mixed / "1.png"}: size 14x8 differs'):
    readers.open_input(mixed)


@pytest.mark.parametrize('h,w', [(48, 64), (47, 63)])
def test_video_writer_round_trip(tmp_path, smooth_frames, decode_all, h, w, psnr):
  src = smooth_frames(6, h, w)
  out = tmp_path / 'out.mp4'
  with video_writer.VideoWriter(out, FPS) as writer:
    for f in src:
      writer.write(f.astype(np.float32) / 255.0)
      assert not out.exists()  # only a hidden temporary name while writing
  decoded, (rate, codec, pix_fmt) = decode_all(out)
  assert (rate, codec, pix_fmt) == (FPS, 'h264', 'yuv420p')
  assert decoded.shape == (6, h + h % 2, w + w % 2, 3)  # odd sizes padded to even
  assert psnr(decoded[:, :h, :w], src, 255) > 35
  assert leftovers(tmp_path) == []


def test_writers_leave_nothing_on_failure(tmp_path):
  out = tmp_path / 'out.mp4'
  with pytest.raises(RuntimeError):
    with video_writer.VideoWriter(out, FPS) as writer:
      writer.write(np.zeros((16, 16, 3), np.uint8))
      raise RuntimeError('decoder failed half-way')
  folder = tmp_path / 'frames'
  with pytest.raises(RuntimeError):
    with writers.FrameFolderWriter(folder) as writer:
      writer.write(np.zeros((8, 8, 3), np.float32), 'a.png')
      raise RuntimeError('boom')
  assert not out.exists() and not folder.exists()
  assert leftovers(tmp_path) == []


def test_frame_folder_writer_keeps_names_and_refuses_existing_outputs(tmp_path):
  folder = tmp_path / 'out'
  with writers.FrameFolderWriter(folder) as writer:
    writer.write(np.full((4, 6, 3), 0.5, np.float32), 'clip1/x_001.png')
    writer.write(np.zeros((4, 6, 3), np.float32), 'clip2/y.jpg')
    assert not folder.exists()
  assert sorted(str(p.relative_to(folder)) for p in folder.rglob('*.*')) == [
      writers.FOLDER_MARK_FILE, 'clip1/x_001.png', 'clip2/y.jpg']
  assert frames.read_image(folder / 'clip1/x_001.png')[0, 0, 0] == pytest.approx(128 / 255)
  with pytest.raises(readers.MediaError, match=rf'^{folder}: already exists'):
    writers.FrameFolderWriter(folder)
  with writers.FrameFolderWriter(folder, overwrite=True) as writer:
    writer.write(np.zeros((4, 6, 3), np.float32), 'z.png')
  assert sorted(os.listdir(folder)) == [writers.FOLDER_MARK_FILE, 'z.png']
  assert leftovers(tmp_path) == []


@pytest.mark.parametrize('name', ['out', 'out.mp4', 'out.png', 'out.jpg'])
def test_overwrite_replaces_only_earlier_outputs(tmp_path, name):
  """A folder or file the user made is never deleted, --overwrite or not."""
  path = tmp_path / name
  if path.suffix:
    path.write_bytes(b'the user\'s own file')
  else:
    path.mkdir()
    (path / 'notes.txt').write_text('mine')
  before = sorted(p.name for p in tmp_path.rglob('*'))
  writer_type = {'': writers.FrameFolderWriter, '.mp4': None, '.png':
                 writers.ImageWriter, '.jpg': writers.ImageWriter}[path.suffix]
  make = ((lambda: video_writer.VideoWriter(path, FPS, overwrite=True))
          if writer_type is None else (lambda: writer_type(path, overwrite=True)))
  with pytest.raises(readers.MediaError) as e:
    make()
  assert str(e.value) == (f'{path}: exists and is not an earlier clarity_jax.enhance '
                          'output; --overwrite replaces only those: choose a new output')
  assert sorted(p.name for p in tmp_path.rglob('*')) == before
  # An earlier output of the writers is replaced.
  if path.suffix:
    path.unlink()
  else:
    shutil.rmtree(path)
  for value in (0.25, 0.75):
    with make() as writer:
      writer.write(np.full((8, 8, 3), value, np.float32), 'a.png')
    assert writers.is_marked_output(path)
  assert leftovers(tmp_path) == []


def test_a_webm_output_is_refused_before_any_frame(tmp_path):
  """.webm is readable but cannot hold H.264: refused by name, nothing written."""
  with pytest.raises(readers.MediaError) as e:
    video_writer.VideoWriter(tmp_path / 'out.webm', FPS)
  assert str(e.value) == (f'{tmp_path / "out.webm"}: .webm cannot hold the H.264 video '
                          'written; use one of .mp4, .mkv, .mov, .m4v, .avi')
  assert list(tmp_path.iterdir()) == []
