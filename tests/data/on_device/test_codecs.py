"""The codec's colour conversions on the device: codecs.py's integer arithmetic,
bit for bit, so that a window x264 compresses is the same bytes wherever its
colours were converted."""

import jax
import numpy as np

from clarity_jax import data
from clarity_jax.data import on_device
from clarity_jax import files
from clarity_jax.data import codecs
from clarity_jax.data.on_device import codecs as jax_codecs


def _windows(photo, h, w):
  """[2, 3, h, w, 3] float windows: a real photograph, random values and the extremes."""
  rng = np.random.default_rng(0)
  x = np.stack([photo[:h, :w], rng.random((h, w, 3)), photo[50:50 + h, 80:80 + w]])
  x = np.stack([x, x[::-1] ** 2]).astype(np.float32)
  x[0, 0, :2, :2] = [[0.0, 1.0, 0.5], [1.0, 0.0, 1.0]]  # black, white, saturated corners
  return x


def test_conversions_equal_the_hosts_bit_for_bit(photo):
  x = _windows(photo, 24, 40)
  u8 = np.asarray(jax.jit(jax_codecs.to_uint8)(x))
  np.testing.assert_array_equal(u8, files.to_uint8(x))
  planes = np.asarray(jax.jit(jax_codecs.rgb_to_yuv420p)(u8))
  want = np.stack([[codecs.rgb_to_yuv420p(f) for f in w] for w in u8])
  assert planes.shape == (2, 3, 36, 40) and planes.dtype == np.uint8
  np.testing.assert_array_equal(planes, want)
  back = np.asarray(jax.jit(jax_codecs.yuv420p_to_rgb)(planes))
  np.testing.assert_array_equal(back, np.stack([[codecs.yuv420p_to_rgb(p) for p in w]
                                                for w in want]))


def test_device_planes_through_x264_give_the_host_codecs_window(photo):
  """on_device.window_planes -> x264 alone -> window_rgb is codecs.video_codec, odd
  sizes (padded by repeating the last row and column) included."""
  x = _windows(photo, 33, 47)
  planes = np.asarray(jax.jit(on_device.window_planes)(x))
  assert planes.shape == (2, 3, 51, 48)
  coded = np.stack([data.video_codec_yuv(p, 30) for p in planes])
  got = np.asarray(jax.jit(lambda p: on_device.window_rgb(p, 33, 47))(coded))
  want = np.stack([codecs.video_codec(w, 30) for w in x])
  np.testing.assert_array_equal(got, want)
  assert np.abs(got - x).max() > 0.02  # x264 did change the frames
