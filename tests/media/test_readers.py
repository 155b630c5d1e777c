"""Reading videos and frames (media/readers.py): streams through real codecs, the kinds of
input, and every bad input (writing: test_writers.py, test_video_writer.py)."""

import fractions
import wave

import numpy as np
import pytest

from clarity_jax.media import frames
from clarity_jax.media import readers

FPS = fractions.Fraction(30000, 1001)  # write_video's default rate


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
