"""Config files loaded by path: configs/ is a folder of files, not a package.

ml_collections' config_flags does this for the command line; variants under configs/,
the experiment and the tests need the same outside of flag parsing.
"""

from __future__ import annotations

import importlib.util
import os
import types

import ml_collections


def load_module(path: str | os.PathLike) -> types.ModuleType:
  name = 'clarity_config_' + os.path.splitext(os.path.basename(path))[0]
  spec = importlib.util.spec_from_file_location(name, path)
  if spec is None or spec.loader is None:
    raise FileNotFoundError(f'{path}: not a Python config file')
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


def get_config(path: str | os.PathLike, arg: str | None = None) -> ml_collections.ConfigDict:
  """`get_config(arg)` of the config file at `path`."""
  return load_module(path).get_config(arg)


def sibling_config(here: str, arg: str | None, name: str = 'default.py'
                   ) -> ml_collections.ConfigDict:
  """The config `name` beside the file `here` (a variant's base config)."""
  return get_config(os.path.join(os.path.dirname(os.path.abspath(here)), name), arg)
