"""Baseline: single-frame (K = 0). The joint model restoring each frame on its own.

Against the default (K = 2, five frames) it measures what aligned multi-frame
fusion adds: detail recovered from neighbours and less flicker/ghosting.
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
  config.num_neighbors = 0
  return config
