"""Compression: JPEG round trips, exact BT.601 integer YUV, a deterministic H.264 codec."""

import ctypes
import fractions
import pathlib

import av
import numpy as np
import pytest

from clarity_jax.data import codecs as C
from clarity_jax import files


def test_jpeg_quality_95_is_closer_than_30(photo):
  img = photo[:128, :128]
  mse = {q: float(np.mean((C.jpeg(img, q) - img)**2)) for q in (30, 95)}
  assert mse[95] < mse[30] / 3
  out = C.jpeg(img, 95)
  assert out.shape == img.shape and out.dtype == np.float32
  np.testing.assert_allclose(out * 255, np.round(out * 255), atol=1e-4)  # 8-bit levels


def test_video_codec_round_trip(photo):
  """H.264 over a window: odd sizes kept, quality follows CRF, deterministic."""
  base = photo[100:133, 200:247]  # 33 x 47: odd both ways
  window = np.stack([np.roll(base, (i, 2 * i), axis=(0, 1)) for i in range(4)])
  good = C.video_codec(window, 18)
  bad = C.video_codec(window, 45)
  assert good.shape == window.shape and good.dtype == np.float32
  mse = lambda x: float(np.mean((x - window)**2))
  assert mse(good) < 0.5 * mse(bad)
  assert mse(good) < 2e-3
  np.testing.assert_array_equal(good, C.video_codec(window, 18))
  with pytest.raises(ValueError, match='unsupported video codec'):
    C.video_codec(window, 18, codec='vp9')


def test_yuv420p_conversions_are_bt601_limited_range(photo):
  """Our integer RGB <-> yuv420p: swscale's conversion (to a level), exact on greys."""
  rgb = files.to_uint8(photo[:96, :128])
  yuv = C.rgb_to_yuv420p(rgb)
  assert yuv.shape == (144, 128) and yuv.dtype == np.uint8
  ref = av.VideoFrame.from_ndarray(rgb, format='rgb24').reformat(format='yuv420p').to_ndarray()
  assert np.abs(yuv[:96].astype(int) - ref[:96]).max() <= 2  # luma (swscale's SIMD rounds)
  assert np.abs(yuv[96:].astype(int) - ref[96:]).mean() < 0.5  # chroma (siting differs)
  back = C.yuv420p_to_rgb(yuv)
  assert 10 * np.log10(255.0**2 / np.mean((back.astype(float) - rgb)**2)) > 38
  for colour in ([0, 0, 0], [255, 255, 255], [128, 128, 128], [17, 200, 90], [250, 3, 128]):
    flat = np.full((4, 6, 3), colour, np.uint8)
    planes = C.rgb_to_yuv420p(flat)
    assert len(np.unique(planes[:4])) == 1
    out = C.yuv420p_to_rgb(planes)
    assert np.abs(out.astype(int) - colour).max() <= (0 if len(set(colour)) == 1 else 1)


def test_video_codec_gives_the_same_bytes_every_time(photo):
  """Many round trips of one noisy window give one result.

  With its macroblock tree, x264's AVX-512 code changed about 1 in 300 of them on the
  development VM (as if it read memory it never wrote): this catches it about half the time.
  """
  rng = np.random.default_rng(1)
  window = np.stack([photo[10 + 2 * i:74 + 2 * i, 20 + 3 * i:84 + 3 * i] for i in range(5)])
  window = np.clip(window + rng.normal(0.0, 0.03, window.shape), 0.0, 1.0).astype(np.float32)
  first = C.video_codec(window, 20).tobytes()
  changed = sum(C.video_codec(window, 20).tobytes() != first for _ in range(400))
  assert changed == 0


def test_x264_settings_are_the_deterministic_ones():
  """The encoder writes its settings into the stream: one thread, no macroblock tree."""
  enc = av.CodecContext.create('libx264', 'w')
  enc.width, enc.height, enc.pix_fmt = 16, 16, 'yuv420p'
  enc.time_base = fractions.Fraction(1, 25)
  enc.options = {'crf': '30', **C.X264_OPTIONS}
  frame = av.VideoFrame.from_ndarray(np.zeros((24, 16), np.uint8), format='yuv420p')
  stream = b''.join(bytes(p) for p in [*enc.encode(frame), *enc.encode(None)])
  settings = stream[stream.index(b'options: '):].split(b'\0')[0].decode().split()
  assert {'threads=1', 'lookahead_threads=1', 'sliced_threads=0', 'mbtree=0'} <= set(settings)


def _libavutil() -> ctypes.CDLL | None:
  """The libavutil PyAV loaded (its own copy in the wheel), found in this process's maps."""
  try:
    maps = pathlib.Path('/proc/self/maps').read_text()
  except OSError:
    return None
  paths = {line.split()[-1] for line in maps.splitlines() if '/libavutil' in line}
  ours = sorted(p for p in paths if 'opencv' not in p)  # OpenCV's wheel bundles its own
  return ctypes.CDLL(ours[0]) if len(ours) == 1 else None


def test_video_codec_output_does_not_depend_on_ffmpeg_simd_paths(photo):
  """The same bytes with FFmpeg's SIMD off: no CPU-dependent swscale conversions."""
  lib = _libavutil()
  if lib is None:
    pytest.skip('cannot locate the libavutil that PyAV uses')
  window = np.stack([photo[100 + 2 * i:164 + 2 * i, 200 + i:264 + i] for i in range(5)])
  fast = C.video_codec(window, 30)
  lib.av_force_cpu_flags(0)
  try:
    plain = C.video_codec(window, 30)
  finally:
    lib.av_force_cpu_flags(-1)  # back to detecting the CPU
  np.testing.assert_array_equal(fast, plain)
