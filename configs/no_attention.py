"""Ablation: no attention. Aligned frames fused by plain averaging instead of eq. (5).

What the temporal/spatial attention adds over treating every aligned neighbour
as equally reliable (occlusions and flow errors then leak into the output).
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
  config.model.use_attention = False
  return config
