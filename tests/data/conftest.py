"""Fixtures shared by the loader tests (test_loader.py)."""

import pytest


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
