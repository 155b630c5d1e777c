"""Baseline: single-frame (K = 0). The joint model restoring each frame on its own.

Against the default (K = 2, five frames) it measures what aligned multi-frame
fusion adds: detail recovered from neighbours and less flicker/ghosting.
"""

from clarity_jax import config as config_lib


def get_config(arg: str | None = None):
  config = config_lib.variant_base(__file__, arg)
  config.num_neighbors = 0
  return config
