"""Variant: the recurrent network (models/recurrent.py) instead of the window.

Each frame is encoded once and its features are carried forward and backward
along the clip; every frame of a training clip is supervised. Clips of 2K + 1 = 7
frames (BasicVSR trains on 15; 7 is what a 2-core budget affords). A clip costs
about as much as 7 window examples, so the batch holds fewer clips than the
window's 8 windows.
"""

from clarity_jax import config as config_lib


def get_config(arg: str | None = None):
  config = config_lib.variant_base(__file__, arg)
  config.model.propagation = 'recurrent'
  config.num_neighbors = 3
  config.batch_size = 2
  return config
