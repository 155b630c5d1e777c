"""The H.264 video writer (media/video_writer.py): a round trip through the codec,
odd sizes, the containers it refuses, the pixel format it writes for an input's."""

import fractions

import numpy as np
import pytest

from clarity_jax.media import readers
from clarity_jax.media import video_writer

FPS = fractions.Fraction(30000, 1001)


@pytest.mark.parametrize('h,w', [(48, 64), (47, 63)])
def test_video_writer_round_trip(tmp_path, smooth_frames, decode_all, h, w, psnr, leftovers):
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


def test_a_webm_output_is_refused_before_any_frame(tmp_path):
  """.webm is readable but cannot hold H.264: refused by name, nothing written."""
  with pytest.raises(readers.MediaError) as e:
    video_writer.VideoWriter(tmp_path / 'out.webm', FPS)
  assert str(e.value) == (f'{tmp_path / "out.webm"}: .webm cannot hold the H.264 video '
                          'written; use one of .mp4, .mkv, .mov, .m4v, .avi')
  assert list(tmp_path.iterdir()) == []


def test_output_pix_fmt_table():
  assert video_writer.output_pix_fmt(None) == 'yuv420p'
  assert video_writer.output_pix_fmt('yuvj420p') == 'yuv420p'
  assert video_writer.output_pix_fmt('yuv422p10le') == 'yuv422p10le'
  assert video_writer.output_pix_fmt('gbrp') == 'yuv444p'
  assert video_writer.output_pix_fmt('yuv420p12le') == 'yuv420p10le'
