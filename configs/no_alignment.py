"""Ablation: no alignment. Five frames fused without flow estimation and warping (eq. 3).

Neighbours reach the encoder and the attention fusion unaligned: what alignment
adds on moving footage (and how much ghosting its absence causes).
"""

import importlib.util
import pathlib


def _default():
  """configs/ is not a package: load the default config beside this file by path."""
  path = pathlib.Path(__file__).with_name('default.py')
  spec = importlib.util.spec_from_file_location('clarity_default_config', path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


def get_config(arg: str | None = None):
  config = _default().get_config(arg)
  config.model.use_alignment = False
  return config
