"""Fixtures shared by the data tests: the loader configs (test_loader.py), and clips
whose pixels say where and from which frame they came (test_source_base.py,
test_sources.py)."""

import numpy as np
import pytest

from clarity_jax.media import frames


@pytest.fixture(scope='session')
def coordinate_clip():
  """coordinate_clip(root, name, n, h=20, w=24, base=0) -> the n frames written to
  root/name/0000.png ..: R = x / 255 and G = y / 255 (a crop tells exactly where it
  came from), B = (base + 10 i + 10) / 255 in frame i (it tells which frame)."""
  def write(root, name: str, n: int, h: int = 20, w: int = 24, base: int = 0
            ) -> list[np.ndarray]:
    ys, xs = np.mgrid[0:h, 0:w]
    (root / name).mkdir(parents=True)
    out = []
    for i in range(n):
      img = np.stack([xs / 255.0, ys / 255.0, np.full((h, w), (base + 10 * i + 10) / 255.0)],
                     -1).astype(np.float32)
      frames.write_image(root / name / f'{i:04d}.png', img)
      out.append(img)
    return out
  return write


@pytest.fixture(scope='module')
def loader_config(tiny_config):
  """loader_config(**overrides): 8x8 LQ crops, K = 1, global batch 4, two workers, one
  batch ahead, the default degradation mix (codec on 40 % of the windows)."""
  defaults = {'data.crop_size': 8, 'batch_size': 4, 'num_neighbors': 1,
              'data.num_parallel_calls': 2, 'data.prefetch': 1}
  return lambda **overrides: tiny_config(**{**defaults, **overrides})


@pytest.fixture
def failing_config(loader_config):
  """Every training example fails while it is made, on the host: eq. (1) draws the
  video codec for every window, and it is one the codecs refuse (a ValueError)."""
  return loader_config(scale=2, **{'degradation.where': 'host',
                                   'degradation.video_codec_prob': 1.0,
                                   'degradation.video_codec': 'libx265'})
