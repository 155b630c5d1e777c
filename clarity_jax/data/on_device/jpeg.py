"""The JPEG round trip of eq. (1) as jittable JAX: libjpeg's lossy steps, on device.

codecs.jpeg (cv2: libjpeg-turbo, baseline, 4:2:0, default settings) is the
reference and runs on the host; this is the same arithmetic on whole batches,
step by step as libjpeg does it, so training can degrade on the accelerator:

  quantise to 8 bits (files.to_uint8) -> RGB to YCbCr (jccolor.c, 16-bit fixed
  point) -> replicate the edges to whole 16x16 MCUs (jcprepct.c, jcsample.c) ->
  2x2 chroma means with libjpeg's alternating bias (h2v2_downsample) -> 8x8 DCT,
  quantise with the IJG tables scaled by quality (jcparam.c) -> dequantise,
  inverse DCT (the decoder) -> triangle chroma upsampling (h2v2_fancy_upsample)
  -> YCbCr to RGB (jdcolor.c) -> crop.

All of it is libjpeg's integer arithmetic, the DCTs included (as matmuls whose
float32 products are exact integers): on photographs the result equals cv2's,
bit for bit, at every quality (tests/data/test_data/on_device/jpeg.py). Left out: the
entropy coding, which is lossless.
"""

import jax
import jax.numpy as jnp
import numpy as np

# IJG's quantisation tables (ITU-T T.81 Annex K.1, as jcparam.c), natural order:
# row = vertical frequency, column = horizontal frequency.
LUMA_TABLE = np.array([
    [16, 11, 10, 16, 24, 40, 51, 61],
    [12, 12, 14, 19, 26, 58, 60, 55],
    [14, 13, 16, 24, 40, 57, 69, 56],
    [14, 17, 22, 29, 51, 87, 80, 62],
    [18, 22, 37, 56, 68, 109, 103, 77],
    [24, 35, 55, 64, 81, 104, 113, 92],
    [49, 64, 78, 87, 103, 121, 120, 101],
    [72, 92, 95, 98, 112, 100, 103, 99]], np.int32)
CHROMA_TABLE = np.full((8, 8), 99, np.int32)
CHROMA_TABLE[:4, :4] = [[17, 18, 24, 47], [18, 21, 26, 66], [24, 26, 56, 99],
                        [47, 66, 99, 99]]

# libjpeg's default DCTs (JDCT_ISLOW: jfdctint.c, jidctint.c) are butterflies in
# 13-bit fixed point, with one rounding shift per 1-D pass. Before that shift each
# pass is an integer linear map of its 8 inputs: the matrices below, built by
# running the butterflies (with those constants) on the unit vectors, so two 8x8
# matmuls per 2-D transform reproduce libjpeg bit for bit. The exact DCT-II would
# differ from it by a fraction of a level, enough to move coefficients next to a
# quantiser decision level (measured on photographs: 50-53 dB PSNR to cv2
# instead of equality).
_CONST_BITS, _PASS1_BITS = 13, 2
_F = {v: int(v * (1 << _CONST_BITS) + 0.5) for v in (
    0.298631336, 0.390180644, 0.541196100, 0.765366865, 0.899976223, 1.175875602,
    1.501321110, 1.847759065, 1.961570560, 2.053119869, 2.562915447, 3.072711026)}


def _odd_part(t4: np.ndarray, t5: np.ndarray, t6: np.ndarray, t7: np.ndarray
              ) -> tuple[np.ndarray, ...]:
  """The rotations shared by jfdctint.c and jidctint.c: 4 inputs -> 4 outputs."""
  z1, z2, z3, z4 = t4 + t7, t5 + t6, t4 + t6, t5 + t7
  z5 = (z3 + z4) * _F[1.175875602]
  z1, z2 = z1 * -_F[0.899976223], z2 * -_F[2.562915447]
  z3, z4 = z3 * -_F[1.961570560] + z5, z4 * -_F[0.390180644] + z5
  return (t4 * _F[0.298631336] + z1 + z3, t5 * _F[2.053119869] + z2 + z4,
          t6 * _F[3.072711026] + z2 + z3, t7 * _F[1.501321110] + z1 + z4)


def _fdct_matrix() -> np.ndarray:
  """jpeg_fdct_islow's 1-D pass before its shift: out = M @ samples.

  Outputs 0 and 4 are scaled by 2^13 like the others, so that both passes can
  end in one rounding shift (pass 1 shifts them left by 2 exactly, pass 2 rounds
  them by 2 bits: the same numbers).
  """
  d = np.eye(8, dtype=np.int64)
  t0, t1, t2, t3 = d[0] + d[7], d[1] + d[6], d[2] + d[5], d[3] + d[4]
  t10, t11, t12, t13 = t0 + t3, t1 + t2, t1 - t2, t0 - t3
  z1 = (t12 + t13) * _F[0.541196100]
  o7, o5, o3, o1 = _odd_part(d[3] - d[4], d[2] - d[5], d[1] - d[6], d[0] - d[7])
  return np.stack([(t10 + t11) << _CONST_BITS, o1, z1 + t13 * _F[0.765366865], o3,
                   (t10 - t11) << _CONST_BITS, o5, z1 - t12 * _F[1.847759065], o7])


def _idct_matrix() -> np.ndarray:
  """jpeg_idct_islow's 1-D pass before its shift: out = M @ coefficients."""
  c = np.eye(8, dtype=np.int64)
  z1 = (c[2] + c[6]) * _F[0.541196100]
  t2, t3 = z1 - c[6] * _F[1.847759065], z1 + c[2] * _F[0.765366865]
  t0, t1 = (c[0] + c[4]) << _CONST_BITS, (c[0] - c[4]) << _CONST_BITS
  t10, t11, t12, t13 = t0 + t3, t1 + t2, t1 - t2, t0 - t3
  b0, b1, b2, b3 = _odd_part(c[7], c[5], c[3], c[1])
  return np.stack([t10 + b3, t11 + b2, t12 + b1, t13 + b0,
                   t13 - b0, t12 - b1, t11 - b2, t10 - b3])


FDCT_MATRIX, IDCT_MATRIX = _fdct_matrix(), _idct_matrix()

# libjpeg's fixed point: FIX(x) = round(x 2^16), as jccolor.c and jdcolor.c.
_SCALEBITS = 16
_ONE_HALF = 1 << (_SCALEBITS - 1)
_FIX = lambda v: int(v * (1 << _SCALEBITS) + 0.5)
_RGB_TO_Y = (_FIX(0.29900), _FIX(0.58700), _FIX(0.11400))
_RGB_TO_CB = (-_FIX(0.16874), -_FIX(0.33126), _FIX(0.5))
_RGB_TO_CR = (_FIX(0.5), -_FIX(0.41869), -_FIX(0.08131))
_CR_TO_R, _CB_TO_B = _FIX(1.40200), _FIX(1.77200)
_CB_TO_G, _CR_TO_G = -_FIX(0.34414), -_FIX(0.71414)
_MCU = 16  # 4:2:0: a minimum coded unit is 16x16 luma samples, 8x8 of each chroma
# uint8 level -> float32 level / 255, the division done here: under jit XLA turns a
# division by a constant into a multiplication by its reciprocal, one ulp off
# codecs.jpeg's values for half of the levels.
_LEVELS = np.arange(256, dtype=np.float32) / np.float32(255)


def quant_table(table: np.ndarray, quality: jax.Array) -> jax.Array:
  """A basic table scaled to `quality` (int, any shape) -> int32 [..., 8, 8].

  jpeg_set_quality with force_baseline (cv2's setting): quality clipped to 1..100,
  scale = 5000 / q below 50, else 200 - 2 q (percent), entries clipped to 1..255.
  """
  q = jnp.clip(jnp.asarray(quality, jnp.int32), 1, 100)[..., None, None]
  scale = jnp.where(q < 50, 5000 // q, 200 - 2 * q)
  return jnp.clip((jnp.asarray(table) * scale + 50) // 100, 1, 255)


def _to_levels(x: jax.Array) -> jax.Array:
  """float [0, 1] -> int32 0..255, as files.to_uint8 (NaN to 0, clip, round half up).

  The same levels whether or not the compiler fuses the multiply and the add into
  one FMA (as LLVM may for GPUs): checked against an exact FMA on every float32
  within 4096 ulps of each level boundary.
  """
  x = jnp.clip(jnp.nan_to_num(jnp.asarray(x, jnp.float32)), 0.0, 1.0)
  return jnp.floor(x * np.float32(255) + np.float32(0.5)).astype(jnp.int32)


def _rgb_to_ycc(rgb: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array]:
  """int32 [..., 3] 0..255 -> Y, Cb, Cr int32 planes (jccolor.c rgb_ycc_convert)."""
  r, g, b = rgb[..., 0], rgb[..., 1], rgb[..., 2]
  dot = lambda c: c[0] * r + c[1] * g + c[2] * b
  y = (dot(_RGB_TO_Y) + _ONE_HALF) >> _SCALEBITS
  # libjpeg rounds chroma with ONE_HALF - 1 so that the maximum stays 255.
  offset = (128 << _SCALEBITS) + _ONE_HALF - 1
  return y, (dot(_RGB_TO_CB) + offset) >> _SCALEBITS, (dot(_RGB_TO_CR) + offset) >> _SCALEBITS


def _pad(plane: jax.Array, h: int, w: int) -> jax.Array:
  """[..., h0, w0] -> [..., h, w], the last row and column repeated."""
  pad = [(0, 0)] * (plane.ndim - 2) + [(0, h - plane.shape[-2]), (0, w - plane.shape[-1])]
  return jnp.pad(plane, pad, mode='edge')


def _downsample(c: jax.Array) -> jax.Array:
  """[..., 2h, 2w] -> [..., h, w]: 2x2 sums + bias 1, 2, 1, ... along a row, / 4.

  h2v2_downsample's ordered dither: a constant bias would drift chroma upwards.
  """
  h, w = c.shape[-2] // 2, c.shape[-1] // 2
  sums = c.reshape(*c.shape[:-2], h, 2, w, 2).sum(axis=(-3, -1))
  return (sums + 1 + jnp.arange(w, dtype=jnp.int32) % 2) >> 2


def _blocks(plane: jax.Array) -> jax.Array:
  """[..., H, W] (multiples of 8) -> [..., H/8, W/8, 8, 8] by reshapes, no gathers."""
  *lead, h, w = plane.shape
  return jnp.swapaxes(plane.reshape(*lead, h // 8, 8, w // 8, 8), -3, -2)


def _unblocks(blocks: jax.Array) -> jax.Array:
  *lead, bh, bw, _, _ = blocks.shape
  return jnp.swapaxes(blocks, -3, -2).reshape(*lead, bh * 8, bw * 8)


def _matmul(m: np.ndarray, x: jax.Array, right: bool) -> jax.Array:
  """Exact int32 m @ x (right: x @ m^T) over the last two axes, as float32 matmuls.

  Accelerators multiply floats; float32 holds every integer up to 2^24. The rows
  of m sum to at most 2^16 in magnitude, so x (|x| < 2^16 here) is split into
  x >> 8 and x & 255, and each half's products and partial sums stay within
  2^24: exact in any summation order, fused or not. HIGHEST: TPUs would otherwise
  multiply in bfloat16 and GPUs in TF32, which do not hold 14-bit constants.
  """
  mf = jnp.asarray(m, jnp.float32)

  def mul(v: jax.Array) -> jax.Array:
    v, hi = v.astype(jnp.float32), jax.lax.Precision.HIGHEST
    out = (jnp.einsum('...ij,uj->...iu', v, mf, precision=hi) if right
           else jnp.einsum('ui,...ij->...uj', mf, v, precision=hi))
    return out.astype(jnp.int32)

  return mul(x >> 8) * 256 + mul(x & 255)


def _descale(x: jax.Array, bits: int) -> jax.Array:
  """libjpeg's DESCALE: a right shift rounding half up."""
  return (x + (1 << (bits - 1))) >> bits


def _code_plane(plane: jax.Array, table: jax.Array) -> jax.Array:
  """One component through DCT, quantisation and back: int32 [..., H, W] -> same.

  `table` [..., 8, 8] broadcasts over the blocks of each leading index.
  """
  b = _blocks(plane - 128)
  # jpeg_fdct_islow: rows, then columns; the result is 8 x the DCT-II of T.81.
  rows = _descale(_matmul(FDCT_MATRIX, b, right=True), _CONST_BITS - _PASS1_BITS)
  coef = _descale(_matmul(FDCT_MATRIX, rows, right=False), _CONST_BITS + _PASS1_BITS)
  # jcdctmgr.c divides by 8 q rounding half away from zero; level * q is what the
  # decoder multiplies back.
  q = table[..., None, None, :, :]
  deq = jnp.sign(coef) * ((jnp.abs(coef) + 4 * q) // (8 * q)) * q
  # jpeg_idct_islow: columns, then rows, then + 128 and the range limit. libjpeg's
  # limit table clips samples in -384..639 and wraps beyond; here they saturate.
  cols = _descale(_matmul(IDCT_MATRIX, deq, right=False), _CONST_BITS - _PASS1_BITS)
  pixels = _descale(_matmul(IDCT_MATRIX, cols, right=True), _CONST_BITS + _PASS1_BITS + 3)
  return _unblocks(jnp.clip(pixels + 128, 0, 255))


def _upsample(c: jax.Array, fancy: bool) -> jax.Array:
  """[..., h, w] -> [..., 2h, 2w], libjpeg-turbo's decoder default.

  Fancy (h2v2_fancy_upsample): each output sample is 9/16, 3/16, 3/16, 1/16 of
  its four nearest input samples, edges repeated, with rounding bias 8, 7 on even,
  odd columns. libjpeg-turbo only uses it with more than 2 samples per row, and
  repeats each sample 2x2 (h2v2_upsample) otherwise.
  """
  if not fancy:
    return jnp.repeat(jnp.repeat(c, 2, axis=-2), 2, axis=-1)
  lead = [(0, 0)] * (c.ndim - 2)
  p = jnp.pad(c, lead + [(1, 1), (0, 0)], mode='edge')
  # Vertical: 3 x nearest row + the row above (even output rows) or below (odd).
  cols = jnp.stack([3 * p[..., 1:-1, :] + p[..., :-2, :],
                    3 * p[..., 1:-1, :] + p[..., 2:, :]], axis=-2)
  cols = cols.reshape(*c.shape[:-2], 2 * c.shape[-2], c.shape[-1])
  p = jnp.pad(cols, lead + [(0, 0), (1, 1)], mode='edge')
  mid = 3 * p[..., 1:-1]
  out = jnp.stack([(mid + p[..., :-2] + 8) >> 4, (mid + p[..., 2:] + 7) >> 4], axis=-1)
  return out.reshape(*cols.shape[:-1], 2 * c.shape[-1])


def _ycc_to_rgb(y: jax.Array, cb: jax.Array, cr: jax.Array) -> jax.Array:
  """Y, Cb, Cr int32 planes -> int32 [..., 3] clipped to 0..255 (jdcolor.c)."""
  cb, cr = cb - 128, cr - 128
  r = y + ((_CR_TO_R * cr + _ONE_HALF) >> _SCALEBITS)
  g = y + ((_CB_TO_G * cb + _CR_TO_G * cr + _ONE_HALF) >> _SCALEBITS)
  b = y + ((_CB_TO_B * cb + _ONE_HALF) >> _SCALEBITS)
  return jnp.clip(jnp.stack([r, g, b], axis=-1), 0, 255)


def jpeg(x: jax.Array, quality: jax.Array) -> jax.Array:
  """JPEG round trip (baseline, 4:2:0) of [..., H, W, 3] images in [0, 1].

  Args:
    x: float [..., H, W, 3], any H, W >= 1; quantised to 8 bits first, as
      codecs.jpeg does.
    quality: int, shape x.shape[:-3] or broadcastable to it (one per image),
      each 1..100 (values outside are clipped, as libjpeg does).

  Returns:
    float32 [..., H, W, 3], multiples of 1/255 in [0, 1]: what decoding gives.
    Jittable (static shapes), vmappable; per image the values codecs.jpeg
    (libjpeg-turbo) decodes, bit for bit.
  """
  h, w = x.shape[-3:-1]
  ph, pw = -(-h // _MCU) * _MCU, -(-w // _MCU) * _MCU
  ch, cw = -(-h // 2), -(-w // 2)  # chroma samples inside the image
  y, cb, cr = _rgb_to_ycc(_to_levels(x))
  quality = jnp.asarray(quality, jnp.int32)
  # Edge expansion to whole MCUs (jcprepct.c, jcsample.c): luma repeats its last
  # row and column. Chroma repeats the last full-resolution column before the 2x2
  # means, but the last row only to an even count; below that it repeats the last
  # chroma row (means of the image's last two rows, where H is even).
  y = _code_plane(_pad(y, ph, pw), quant_table(LUMA_TABLE, quality))
  chroma = quant_table(CHROMA_TABLE, quality)
  cb, cr = (_code_plane(_pad(_downsample(_pad(c, 2 * ch, pw)), ph // 2, pw // 2), chroma)
            for c in (cb, cr))
  # The decoder upsamples from the chroma samples inside the image only, edges
  # repeated (jdmainct.c's context rows, the upsampler's last column).
  cb, cr = (_upsample(c[..., :ch, :cw], fancy=cw > 2)[..., :h, :w] for c in (cb, cr))
  return jnp.asarray(_LEVELS)[_ycc_to_rgb(y[..., :h, :w], cb, cr)]
