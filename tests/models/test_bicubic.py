"""The one bicubic: Keys a = -0.5 as PIL computes it, and exactly the model's skip."""

import numpy as np
import pytest

from clarity_jax.models import bicubic
from clarity_jax.models import claritynet


@pytest.mark.parametrize('scale', [2, 4])
def test_matches_pil_bicubic(scale, pil_bicubic):
  frame = np.random.default_rng(scale).random((13, 19, 3), np.float32)
  got = np.asarray(bicubic.upsample(frame, scale))
  assert got.shape == (13 * scale, 19 * scale, 3) and got.dtype == np.float32
  np.testing.assert_allclose(got, pil_bicubic(frame, scale), atol=2e-5)


def test_upsample_frame_is_the_clipped_picture_and_takes_uint8(pil_bicubic):
  u8 = np.random.default_rng(1).integers(0, 256, (9, 11, 3), dtype=np.uint8)
  got = bicubic.upsample_frame(u8, 4)
  want = np.clip(pil_bicubic(u8.astype(np.float32) / 255, 4), 0, 1)
  np.testing.assert_allclose(got, want, atol=2e-5)
  assert got.min() >= 0 and got.max() <= 1
  np.testing.assert_array_equal(bicubic.upsample(u8[None].astype(np.float32), 1)[0], u8)


def test_is_the_models_global_skip():
  """ClarityNetSR adds its residual to exactly this picture of the reference frame."""
  lq = np.random.default_rng(2).random((1, 3, 8, 12, 3), np.float32)
  skip = claritynet.upsample_reference(lq, 1, 2)
  np.testing.assert_array_equal(np.asarray(skip), np.asarray(bicubic.upsample(lq[:, 1], 2)))
