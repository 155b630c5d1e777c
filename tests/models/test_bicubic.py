"""The one bicubic: Keys a = -0.5 as PIL computes it, and exactly the model's skip."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

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


@pytest.mark.parametrize('scale', [2, 4])
def test_is_the_models_global_skip(scale):
  """ClarityNetSR adds its residual to this picture of the reference frame: with its
  last convolution zeroed, it returns it (sides off the padding multiple too)."""
  model = claritynet.create_model('tiny', scale=scale, num_neighbors=1, rngs=nnx.Rngs(0))
  for p in (model.decoder.conv_out.kernel, model.decoder.conv_out.bias):
    p[...] = jnp.zeros_like(p[...])
  lq = np.random.default_rng(2).random((1, 3, 8, 12, 3), np.float32)
  np.testing.assert_allclose(np.asarray(model(lq)), np.asarray(bicubic.upsample(lq[:, 1], scale)),
                             atol=1e-6)


def test_phases_match_jax_image_resize_at_every_border():
  """The phase form is jax.image.resize's cubic (renormalised at the border), 1 to 3
  pixel sides included."""
  for h, w in ((1, 1), (2, 3), (7, 5)):
    x = np.random.default_rng(h).random((2, h, w, 3), np.float32)
    want = jax.image.resize(x, (2, 4 * h, 4 * w, 3), 'cubic', antialias=False)
    np.testing.assert_allclose(np.asarray(bicubic.upsample(x, 4)), np.asarray(want), atol=1e-6)
