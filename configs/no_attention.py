"""Ablation: no attention. Aligned frames fused by plain averaging instead of eq. (5).

What the temporal/spatial attention adds over treating every aligned neighbour
as equally reliable (occlusions and flow errors then leak into the output).
"""

from clarity_jax import config as config_lib


def get_config(arg: str | None = None):
  config = config_lib.variant_base(__file__, arg)
  config.model.use_attention = False
  return config
