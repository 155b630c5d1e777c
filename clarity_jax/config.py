"""Configs: loaded by path, and checked before anything compiles or reads data.

configs/ is a folder of files, not a package. ml_collections' config_flags loads
them for the command line; variants under configs/, launch/experiment.py and the
tests need the same outside of flag parsing. `check_fields` fails fast, in one line
naming the field.
"""

from __future__ import annotations

import importlib.util
import os
import types

import jax
import ml_collections

from clarity_jax.errors import ConfigError


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


def variant_base(here: str, arg: str | None) -> ml_collections.ConfigDict:
  """The config a variant's deltas apply to: configs/default.py with `arg`, or, when
  `arg` starts with 'shipped', the shipped recipe (configs/shipped.py) with the rest:
  `--config=configs/sr_only.py:shipped` is the SR-only network on the shipped recipe."""
  parts = [p for p in (arg or '').split(',') if p]
  if parts[:1] == ['shipped']:
    return sibling_config(here, ','.join(parts[1:]) or None, 'shipped.py')
  return sibling_config(here, arg)


def override(config: ml_collections.ConfigDict, fields: dict[str, object]
             ) -> ml_collections.ConfigDict:
  """Sets dotted fields ('data.crop_size': 16) in place, as --config.FIELD=VALUE
  does on the command line (an unknown field is an error there too); returns
  `config`."""
  for key, value in fields.items():
    node = config
    for part in key.split('.'):
      if not isinstance(node, ml_collections.ConfigDict) or part not in node:
        raise ConfigError(f'config.{key}: no such field')
      parent, node = node, node[part]
    parent[key.split('.')[-1]] = value
  return config


def _check(ok: bool, field: str, message: str) -> None:
  if not ok:
    raise ConfigError(f'config.{field}: {message}')


def check_fields(config: ml_collections.ConfigDict) -> None:
  """Raises ConfigError on the first field the run cannot use."""
  _check(config.scale in (1, 2, 4), 'scale', f'must be 1, 2 or 4, got {config.scale!r}')
  _check(isinstance(config.num_neighbors, int) and config.num_neighbors >= 0,
         'num_neighbors', f'K must be an integer >= 0, got {config.num_neighbors!r}')
  _check(config.data.crop_size > 0, 'data.crop_size',
         f'must be positive, got {config.data.crop_size!r}')
  _check(config.batch_size > 0, 'batch_size', f'must be positive, got {config.batch_size}')
  devices, space = jax.device_count(), config.mesh.space
  _check(isinstance(space, int) and space >= 1 and jax.local_device_count() % space == 0,
         'mesh.space', f'must be an integer >= 1 dividing the {jax.local_device_count()} '
         f'devices of each host, got {space!r}')
  groups = devices // space
  _check(config.batch_size % groups == 0, 'batch_size',
         f'global batch {config.batch_size} is not divisible by the {groups} '
         + ('devices' if space == 1 else f'groups of {space} devices (config.mesh.space)'))
  _check(config.data.crop_size % space == 0, 'data.crop_size',
         f'{config.data.crop_size} rows do not split evenly over config.mesh.space={space}')
  _check(config.num_train_steps > 0, 'num_train_steps', 'must be positive')
  _check(config.warmup_steps >= 0, 'warmup_steps', 'must be >= 0')
  _check(0.0 <= config.ema_decay < 1.0, 'ema_decay', 'must be in [0, 1)')
  for name in ('charbonnier_weight', 'perceptual_weight', 'edge_weight', 'temporal_weight'):
    _check(config.loss[name] >= 0, f'loss.{name}', 'must be >= 0')
  for name in ('log_every_steps', 'eval_every_steps', 'checkpoint_every_steps'):
    _check(config[name] > 0, name, 'must be positive')
  _check(config.degradation.get('where', 'host') in ('auto', 'host', 'device'),
         'degradation.where',
         f"must be 'auto', 'host' or 'device', got {config.degradation.get('where')!r}")
  _check(config.data.get('loader', 'auto') in ('auto', 'tf', 'threads'),
         'data.loader', f"must be 'auto', 'tf' or 'threads', got {config.data.get('loader')!r}")
  source = config.data.source
  _check(source not in ('frame_folders', 'video'), 'data.source',
         f'{source!r} was merged into footage: use config.data.source=footage (it reads '
         'videos, frame folders and comma-separated mixes of them)')
  _check(source in ('synthetic', 'footage', 'tfds'), 'data.source',
         f"must be synthetic, footage or tfds, got {source!r}")
  _check(isinstance(config.data.get('downscale', 1), int) and config.data.get('downscale', 1)
         >= 1, 'data.downscale', f"must be an integer >= 1, got {config.data.get('downscale')!r}")
  for field in ('photo_share', 'turn_share'):
    share = config.data.get(field, 0.0)
    _check(isinstance(share, (int, float)) and 0 <= share <= 1, f'data.{field}',
           f'must be a share in [0, 1], got {share!r}')
  if source == 'footage':
    _check(bool(config.data.path), 'data.path', f'is empty but data.source is {source!r}')
    for path in config.data.path.split(','):  # video files and folders
      _check(os.path.isdir(path) or os.path.isfile(path), 'data.path',
             f'{path}: no such file or folder')
  if config.data.val_path:
    # tfds: a data_dir; otherwise footage (synthetic validates on footage too).
    paths = [config.data.val_path] if source == 'tfds' else config.data.val_path.split(',')
    for path in paths:
      _check(os.path.exists(path), 'data.val_path', f'{path}: no such file or folder')
  _check(config.model.get('uncertainty', False) or not config.get('freeze_restorer', False),
         'freeze_restorer', 'trains only the uncertainty head: set config.model.uncertainty=True')
  weights = config.loss.vgg_weights
  if weights and config.loss.perceptual_weight > 0:
    _check(os.path.isfile(weights), 'loss.vgg_weights', f'{weights}: no such file')
