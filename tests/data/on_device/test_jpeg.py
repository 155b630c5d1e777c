"""jax_jpeg: libjpeg's lossy steps in JAX, against libjpeg-turbo itself (cv2, PIL).

codecs.jpeg (cv2) is the reference. The JAX round trip claims libjpeg's integer
arithmetic step by step, so on real photographs it is held to the same bytes,
besides the 40 dB PSNR that the device pipeline needs. Compiling dominates on
CPU: the tests share a few shapes through one jitted function.
"""

import io

import cv2
import jax
import numpy as np
from PIL import Image
import pytest
import scipy.fft
from skimage import data as skdata

from clarity_jax import files
from clarity_jax.data import codecs
from clarity_jax.data.on_device import jpeg as jax_jpeg

_jpeg = jax.jit(jax_jpeg.jpeg)  # one program per input shape, for all qualities
QUALITIES = (30, 50, 75, 95)


@pytest.fixture(scope='module')
def photos(photo) -> dict[str, np.ndarray]:
  """Real photographs, float32 [0, 1]: the astronaut, a cat, a cup of coffee."""
  return {'astronaut': photo,
          'chelsea': skdata.chelsea().astype(np.float32) / 255.0,
          'coffee': skdata.coffee().astype(np.float32) / 255.0}


@pytest.fixture(scope='module')
def crops(photos) -> dict[str, np.ndarray]:
  """64 x 96 crops of textured parts (two macroblocks by three, no padding)."""
  return {name: img[100:164, 200:296] for name, img in photos.items()}


def test_equals_libjpeg_on_photographs(photos, psnr):
  """Whole 512 x 512 and odd-sized crops (37 x 53: padding, odd chroma) of 3 photos."""
  cases = [('astronaut', photos['astronaut'])]
  cases += [(f'{name} 37x53', img[11:48, 5:58]) for name, img in photos.items()]
  for name, img in cases:
    for q in QUALITIES:
      out, ref = np.asarray(_jpeg(img, q)), codecs.jpeg(img, q)
      assert psnr(out, ref) >= 40, (name, q)
      np.testing.assert_array_equal(out, ref, err_msg=f'{name} at quality {q}')


def test_equals_pil(photos):
  """A second libjpeg front end: PIL's 4:2:0 baseline encoder and its decoder."""
  img = photos['coffee'][200:237, 300:353]
  for q in (20, 90):
    buf = io.BytesIO()
    Image.fromarray(files.to_uint8(img)).save(buf, 'JPEG', quality=q, subsampling=2)
    ref = np.asarray(Image.open(io.BytesIO(buf.getvalue())).convert('RGB'))
    np.testing.assert_array_equal(np.asarray(_jpeg(img, q)), ref / np.float32(255))


def test_tiny_sizes_follow_libjpegs_special_cases():
  """Edge cases of libjpeg's padding and upsampling, on noise (every coefficient busy).

  1 x 1; 2 x 3 (H even: chroma rows repeated after the 2x2 means; W <= 4: box
  upsampling instead of the triangle filter); 17 x 4; 6 x 5.
  """
  rng = np.random.default_rng(0)
  for shape in ((1, 1), (2, 3), (17, 4), (6, 5)):
    img = rng.random((*shape, 3), dtype=np.float32)
    np.testing.assert_array_equal(np.asarray(_jpeg(img, 50)), codecs.jpeg(img, 50),
                                  err_msg=str(shape))


def test_input_levels_are_files_to_uint8():
  """At, and a few ulps around, every rounding boundary (k + 1/2) / 255; NaN, inf.

  Also, a fused multiply-add (exact product, one rounding), which GPU compilers
  may emit for x * 255 + 1/2, gives files.to_uint8's levels within 4096 ulps of
  every boundary: the module's claim that the fusion cannot change a level.
  """
  mid = (np.arange(-1, 257, dtype=np.float32) + np.float32(0.5)) / np.float32(255)
  values = [mid]
  lo, hi = mid, mid
  for _ in range(8):
    lo, hi = np.nextafter(lo, np.float32(-2)), np.nextafter(hi, np.float32(2))
    values += [lo, hi]
  x = np.concatenate(values + [np.array([np.nan, np.inf, -np.inf, -0.3, 1.7], np.float32)])
  levels = np.asarray(jax.jit(jax_jpeg._to_levels)(x))  # pylint: disable=protected-access
  np.testing.assert_array_equal(levels, files.to_uint8(x))
  near = (mid[1:-1].view(np.int32)[:, None] + np.arange(-4096, 4097, dtype=np.int32))
  near = np.clip(near.reshape(-1).view(np.float32), 0, 1)
  fused = np.floor((near.astype(np.float64) * 255 + 0.5).astype(np.float32))
  np.testing.assert_array_equal(fused, files.to_uint8(near))


def _dqt_tables(jpeg_bytes: bytes) -> dict[int, np.ndarray]:
  """The 8-bit quantisation tables of a JPEG file's DQT segments, natural order."""
  # T.81 Figure A.6: the zigzag visits anti-diagonals, alternating direction.
  zigzag = sorted(((i, j) for i in range(8) for j in range(8)),
                  key=lambda p: (p[0] + p[1], p[1] if (p[0] + p[1]) % 2 == 0 else p[0]))
  tables, pos = {}, 2
  while jpeg_bytes[pos + 1] != 0xDA:  # up to the start of scan
    length = int.from_bytes(jpeg_bytes[pos + 2:pos + 4], 'big')
    if jpeg_bytes[pos + 1] == 0xDB:
      seg = jpeg_bytes[pos + 4:pos + 2 + length]
      while seg:
        assert seg[0] >> 4 == 0  # 8-bit entries (baseline)
        table = np.zeros((8, 8), np.int32)
        for k, (i, j) in enumerate(zigzag):
          table[i, j] = seg[1 + k]
        tables[seg[0] & 15], seg = table, seg[65:]
    pos += 2 + length
  return tables


def test_quant_tables_are_the_ones_libjpeg_writes():
  """Every quality 1..100 (and the clipping of 0 and 150, as cv2 and libjpeg do)."""
  qualities = np.concatenate([np.arange(1, 101), [0, 150]]).astype(np.int32)
  luma = np.asarray(jax_jpeg.quant_table(jax_jpeg.LUMA_TABLE, qualities))
  chroma = np.asarray(jax_jpeg.quant_table(jax_jpeg.CHROMA_TABLE, qualities))
  img = np.zeros((8, 8, 3), np.uint8)
  for q, lum, chrom in zip(qualities, luma, chroma):
    _, buf = cv2.imencode('.jpg', img, [cv2.IMWRITE_JPEG_QUALITY, int(q)])
    tables = _dqt_tables(buf.tobytes())
    np.testing.assert_array_equal(lum, tables[0], err_msg=f'quality {q}')
    np.testing.assert_array_equal(chrom, tables[1], err_msg=f'quality {q}')


def test_dct_matrices_are_the_dct_in_13_bit_fixed_point():
  """sqrt(8) x the orthonormal DCT-II (scipy) in units of 2^-13, to libjpeg's rounding;
  rows under 2^16 in absolute sum, what makes the float32 matmuls exact."""
  dct = np.sqrt(8) * scipy.fft.dct(np.eye(8), norm='ortho', axis=0)
  np.testing.assert_allclose(jax_jpeg.FDCT_MATRIX / 2**13, dct, atol=3e-4)
  np.testing.assert_allclose(jax_jpeg.IDCT_MATRIX / 2**13, dct.T, atol=3e-4)
  for m in (jax_jpeg.FDCT_MATRIX, jax_jpeg.IDCT_MATRIX):
    assert np.abs(m).sum(axis=1).max() <= 2**16


def _blockiness(img: np.ndarray) -> float:
  """Mean |difference| of neighbours across 8x8 block boundaries / inside blocks."""
  dx = np.abs(np.diff(img.astype(np.float64), axis=1)).mean(axis=(0, 2))
  dy = np.abs(np.diff(img.astype(np.float64), axis=0)).mean(axis=(1, 2))
  across_x, across_y = np.arange(dx.size) % 8 == 7, np.arange(dy.size) % 8 == 7
  return float(np.concatenate([dx[across_x], dy[across_y]]).mean()
               / np.concatenate([dx[~across_x], dy[~across_y]]).mean())


def test_blocking_at_low_quality(crops):
  img = crops['astronaut']
  assert _blockiness(img) < 1.1  # the photograph has no grid of its own
  for q in (10, 30):
    out = np.asarray(_jpeg(img, q))
    assert _blockiness(out) > 1.3, q
    assert _blockiness(out) == pytest.approx(_blockiness(codecs.jpeg(img, q)), rel=0.02)
  assert _blockiness(np.asarray(_jpeg(img, 95))) < 1.1


def test_quality_per_image_nested_batch(crops, psnr):
  """[2, 5, H, W, 3] with qualities [5] broadcast over the leading axes: each image
  at its own quality is codecs.jpeg's, and fidelity grows with quality."""
  qualities = np.array([10, 30, 50, 75, 95], np.int32)
  imgs = np.stack([crops['astronaut'], crops['coffee']])
  batch = np.repeat(imgs[:, None], len(qualities), axis=1)
  out = np.asarray(_jpeg(batch, qualities))
  assert out.shape == batch.shape and out.dtype == np.float32
  for i, img in enumerate(imgs):
    for j, q in enumerate(qualities):
      np.testing.assert_array_equal(out[i, j], codecs.jpeg(img, int(q)))
    fidelity = [psnr(o, img) for o in out[i]]
    assert all(a < b for a, b in zip(fidelity, fidelity[1:])), fidelity


def test_vmap_and_jit(photos):
  """vmap over images, each with its own quality (0 and 150 clipped as cv2 does)."""
  imgs = np.stack([p[60:97, 70:123] for p in photos.values()])  # 3 x 37 x 53
  qualities = np.array([0, 60, 150], np.int32)
  out = np.asarray(jax.jit(jax.vmap(jax_jpeg.jpeg))(imgs, qualities))
  assert out.shape == imgs.shape and out.dtype == np.float32
  assert out.min() >= 0 and out.max() <= 1
  levels = np.round(out * 255).astype(np.float32)
  np.testing.assert_array_equal(out, levels / np.float32(255))  # decoded 8-bit levels
  for img, q, o in zip(imgs, qualities, out):
    np.testing.assert_array_equal(o, codecs.jpeg(img, int(q)))
