"""Fixtures shared by the loader tests (test_loader.py)."""

import numpy as np
import pytest

from clarity_jax.media import frames


@pytest.fixture(scope='module')
def loader_config(tiny_config):
  """loader_config(**overrides): 8x8 LQ crops, K = 1, global batch 4, two workers, one
  batch ahead, the default degradation mix (codec on 40 % of the windows)."""
  defaults = {'data.crop_size': 8, 'batch_size': 4, 'num_neighbors': 1,
              'data.num_parallel_calls': 2, 'data.prefetch': 1}
  return lambda **overrides: tiny_config(**{**defaults, **overrides})


@pytest.fixture
def truncated_clips(tmp_path):
  """A frame-folder root of one 3-frame clip whose frame 1 is truncated on disk (its
  header reads, its pixels do not): every window needs it, so the first example fails."""
  clip = tmp_path / 'clip'
  clip.mkdir()
  rng = np.random.default_rng(0)
  for i in range(3):
    frames.write_image(clip / f'{i}.png', rng.random((24, 24, 3)))
  data = (clip / '1.png').read_bytes()
  (clip / '1.png').write_bytes(data[:len(data) // 2])
  return tmp_path
