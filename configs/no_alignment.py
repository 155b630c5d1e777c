"""Ablation: no alignment. Five frames fused without flow estimation and warping (eq. 3).

Neighbours reach the encoder and the attention fusion unaligned: what alignment
adds on moving footage (and how much ghosting its absence causes).
"""

from clarity_jax import config as config_lib


def get_config(arg: str | None = None):
  config = config_lib.variant_base(__file__, arg)
  config.model.use_alignment = False
  return config
