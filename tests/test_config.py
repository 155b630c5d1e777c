"""config.py: configs loaded by path, dotted overrides, one-line field errors."""

import pytest

from clarity_jax import config as config_lib
from clarity_jax import errors


@pytest.mark.parametrize('field,value,message', [
    ('scale', 3, 'config.scale: must be 1, 2 or 4'),
    ('num_neighbors', -1, 'config.num_neighbors: K must be an integer >= 0'),
    ('data.source', 'footage', 'config.data.path: is empty'),
    ('data.source', 'frame_folders', "^config.data.source: 'frame_folders' was merged into "
     'footage: use config.data.source=footage'),
    ('data.source', 'video', "^config.data.source: 'video' was merged into footage"),
    ('batch_size', 0, 'config.batch_size: must be positive'),
    ('data.photo_share', 1.5, r'config.data.photo_share: must be a share in \[0, 1\], got 1.5'),
    ('data.loader', 'processes',
     r"^config.data.loader: must be 'auto', 'tf' or 'threads', got 'processes'$"),
])
def test_config_errors_name_the_field(tiny_config, field, value, message):
  with pytest.raises(errors.ConfigError, match=message):
    config_lib.check_fields(tiny_config(**{field.replace('.', '__'): value}))


def test_variants_load_their_base_config_by_path(repo):
  base = config_lib.get_config(repo / 'configs' / 'default.py', 'runlocal')
  single = config_lib.get_config(repo / 'configs' / 'single_frame.py', 'runlocal')
  assert single.num_neighbors == 0 and base.num_neighbors == 2
  assert single.model.variant == base.model.variant
  with pytest.raises(FileNotFoundError, match='not a Python config file'):
    config_lib.load_module(repo / 'configs')


def test_override_sets_dotted_fields(load_config):
  config = config_lib.override(load_config('runlocal'), {'data.crop_size': 16, 'scale': 2})
  assert (config.data.crop_size, config.scale) == (16, 2)
  for field in ('data.no_such_field', 'scale.x'):
    with pytest.raises(errors.ConfigError, match=f'config.{field}: no such field'):
      config_lib.override(config, {field: 1})


def test_the_shipped_recipe_config(repo):
  """configs/shipped.py: runlocal with only its deltas; valid once given footage."""
  from clarity_jax import config as config_lib  # pylint: disable=g-import-not-at-top
  config = config_lib.get_config(repo / 'configs' / 'shipped.py')
  assert config.data.source == 'footage' and config.data.downscale == 2
  assert config.degradation.truncate_kernels is False
  assert config.model.variant == 'small' and config.num_neighbors == 2 and config.scale == 4
  assert config.ema_decay > 0
  with pytest.raises(errors.ConfigError, match="data.path"):
    config_lib.check_fields(config)
  config.data.path = str(repo / 'configs')
  config_lib.check_fields(config)


def test_a_variant_applies_to_the_default_or_with_shipped_to_the_shipped_recipe(repo):
  sr = lambda arg: config_lib.get_config(repo / 'configs' / 'sr_only.py', arg)
  shipped = config_lib.get_config(repo / 'configs' / 'shipped.py')
  runlocal = config_lib.get_config(repo / 'configs' / 'default.py', 'runlocal')
  on_shipped, on_runlocal = sr('shipped'), sr('runlocal')
  assert on_shipped.degradation.blur_prob == on_runlocal.degradation.blur_prob == 0.0
  assert shipped.degradation.blur_prob > 0  # the delta, applied
  for field in ('batch_size', 'learning_rate', 'num_train_steps'):
    assert on_shipped[field] == shipped[field] and on_runlocal[field] == runlocal[field]
  assert on_shipped.data.source == 'footage' and on_runlocal.data.source == 'synthetic'
  assert sr('shipped,variant=tiny').model.variant == 'tiny'  # the rest goes to the recipe
