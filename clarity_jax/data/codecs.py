"""Compression C of eq. (1): JPEG per frame and a real video codec per window.

NumPy/OpenCV/PyAV only, like degradations.py, which applies them. The codec's
colour conversions are exact integer arithmetic (BT.601, below) so that a window
is the same bytes on every CPU: the training pipeline is a pure function of
(seed, example index), and resuming relies on it.
"""

import fractions

import av
import cv2
import numpy as np

from clarity_jax import files


def jpeg(img: np.ndarray, quality: int) -> np.ndarray:
  """JPEG round trip at `quality` (cv2, 4:2:0 chroma): blocking and ringing."""
  ok, buf = cv2.imencode('.jpg', cv2.cvtColor(files.to_uint8(img), cv2.COLOR_RGB2BGR),
                         [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
  if not ok:
    raise RuntimeError(f'JPEG encoding failed at quality {quality}')
  out = cv2.cvtColor(cv2.imdecode(buf, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
  return out.astype(np.float32) / 255.0


# BT.601 limited-range RGB <-> Y'CbCr (what H.264 streams without colour metadata
# use), in 16-bit fixed point. Integer arithmetic in NumPy is exact, so the frames
# the encoder sees and the RGB decoded back are the same bytes on every CPU; FFmpeg's
# swscale (PyAV's reformat) picks SIMD paths that round differently (measured: with
# its SIMD off, a CRF 28 round trip changed 78 % of the values, by up to 60 levels).
_RGB_TO_Y = np.array([16829, 33039, 6416], np.int64)  # 2^16 (65.481, 128.553, 24.966) / 255
_RGB_TO_CB = np.array([-9714, -19070, 28784], np.int64)  # 2^16 (-37.797, -74.203, 112) / 255
_RGB_TO_CR = np.array([28784, -24103, -4681], np.int64)  # 2^16 (112, -93.786, -18.214) / 255
_Y_TO_RGB = 76309  # 2^16 255 / 219; then the inverse matrix, x 2^16:
_CR_TO_R, _CB_TO_G, _CR_TO_G, _CB_TO_B = 104597, -25675, -53279, 132201


def rgb_to_yuv420p(rgb: np.ndarray) -> np.ndarray:
  """[H, W, 3] uint8 (H, W even) -> [3H/2, W] uint8 yuv420p planes, chroma 2x2 means."""
  h, w, _ = rgb.shape
  x = rgb.astype(np.int64)
  y = ((x @ _RGB_TO_Y + 32768) >> 16) + 16

  def chroma(coeffs: np.ndarray) -> np.ndarray:
    c = (x @ coeffs).reshape(h // 2, 2, w // 2, 2).sum(axis=(1, 3))
    return ((c + 131072) >> 18) + 128

  planes = [y.reshape(-1), chroma(_RGB_TO_CB).reshape(-1), chroma(_RGB_TO_CR).reshape(-1)]
  return np.clip(np.concatenate(planes), 0, 255).astype(np.uint8).reshape(3 * h // 2, w)


def _upsample_chroma(c: np.ndarray) -> np.ndarray:
  """[h, w] -> [2h, 2w] x 16: bilinear between chroma sample centres, edges repeated."""
  p = np.pad(c, 1, mode='edge')
  rows = np.stack([3 * p[1:-1] + p[:-2], 3 * p[1:-1] + p[2:]], axis=1).reshape(-1, p.shape[1])
  return np.stack([3 * rows[:, 1:-1] + rows[:, :-2], 3 * rows[:, 1:-1] + rows[:, 2:]],
                  axis=2).reshape(rows.shape[0], -1)


def yuv420p_to_rgb(yuv: np.ndarray) -> np.ndarray:
  """The inverse of rgb_to_yuv420p: [3H/2, W] uint8 -> [H, W, 3] uint8."""
  h, w = yuv.shape[0] * 2 // 3, yuv.shape[1]
  flat = yuv.reshape(-1).astype(np.int64)
  y = (flat[:h * w].reshape(h, w) - 16) * (16 * _Y_TO_RGB)
  cb, cr = (_upsample_chroma(plane.reshape(h // 2, w // 2) - 128)
            for plane in np.split(flat[h * w:], 2))
  rgb = np.stack([y + _CR_TO_R * cr, y + _CB_TO_G * cb + _CR_TO_G * cr, y + _CB_TO_B * cb], -1)
  return np.clip((rgb + (1 << 19)) >> 20, 0, 255).astype(np.uint8)


# x264 settings of `video_codec`, deterministic ones (see there).
X264_OPTIONS = {'preset': 'medium', 'threads': '1', 'mbtree': '0'}


def video_codec(frames: np.ndarray, crf: int, codec: str = 'libx264') -> np.ndarray:
  """Encodes [T, H, W, 3] with a real codec (PyAV, in memory) and decodes it back.

  H.264 needs even sizes for 4:2:0 chroma: odd ones are padded by repeating the
  last row/column and cropped after decoding.

  Deterministic, the same bytes at every call (the pipeline is a pure function of
  (seed, example index), and resuming relies on it):
  * one x264 thread (X264_OPTIONS): the encoding depends on the thread count,
    which x264 would otherwise derive from the machine's cores;
  * no macroblock tree (`mbtree=0`): with it, x264's AVX-512 code gave a different
    encoding in about 0.4 % of the round trips of the same 5 x 64 x 64 window
    (29 of 8,000; 0 of 12,000 with AVX-512 masked off, 0 of 17,000 with mbtree
    off at 16x16 to 128x128), as if it read memory it never wrote;
  * exact integer colour conversions (above) instead of swscale's SIMD;
  * one decoder thread (H.264 decoding is exact anyway; it spares a thread pool
    per window, and tf.data parallelism stays with tf.data).
  Across machines: x264's SIMD from SSSE3 to AVX-512 gave the same bytes, its
  plain C code (no SIMD, or SSE2 only) others, so other CPU families (e.g. ARM)
  may give slightly different, equally valid windows.
  """
  t, h, w, _ = frames.shape
  ph, pw = h + h % 2, w + w % 2
  padded = np.pad(files.to_uint8(frames), ((0, 0), (0, ph - h), (0, pw - w), (0, 0)),
                  mode='edge')
  planes = video_codec_yuv(np.stack([rgb_to_yuv420p(f) for f in padded]), crf, codec)
  out = np.stack([yuv420p_to_rgb(p) for p in planes])
  return out[:, :h, :w].astype(np.float32) / 255.0


def video_codec_yuv(planes: np.ndarray, crf: int, codec: str = 'libx264') -> np.ndarray:
  """The codec's round trip of yuv420p frames [T, 3H/2, W] uint8 (H, W even): x264
  alone, for frames whose colour conversions ran elsewhere (the device, with
  data/on_device/codecs.py's copy of the exact integer arithmetic above). See video_codec."""
  if codec != 'libx264':
    raise ValueError(f'unsupported video codec {codec!r}; supported: libx264')
  t, rows, pw = planes.shape
  enc = av.CodecContext.create(codec, 'w')
  enc.width, enc.height, enc.pix_fmt = pw, rows * 2 // 3, 'yuv420p'
  enc.time_base = fractions.Fraction(1, 25)
  enc.framerate = fractions.Fraction(25, 1)
  enc.options = {'crf': str(int(crf)), **X264_OPTIONS}
  packets = []
  for i, plane in enumerate(planes):
    vf = av.VideoFrame.from_ndarray(np.ascontiguousarray(plane), format='yuv420p')
    vf.pts = i
    packets.extend(enc.encode(vf))
  packets.extend(enc.encode(None))
  dec = av.CodecContext.create('h264', 'r')
  dec.thread_count = 1
  out = []
  for packet in packets + [None]:
    for f in dec.decode(packet):
      if f.format.name != 'yuv420p':
        raise RuntimeError(f'{codec} round trip decoded {f.format.name}, expected yuv420p')
      out.append(f.to_ndarray())
  if len(out) != t:
    raise RuntimeError(f'{codec} round trip returned {len(out)} frames for {t}')
  return np.stack(out)
