"""The baselines evaluate compares with (configs/sr_only.py, deblur_only.py, ...) each
change only what names them."""

import ml_collections
import pytest

from clarity_jax import config as config_lib


def _flat(config, prefix=''):
  out = {}
  for key, value in config.items():
    if isinstance(value, ml_collections.ConfigDict):
      out.update(_flat(value, f'{prefix}{key}.'))
    else:
      out[f'{prefix}{key}'] = value
  return out


@pytest.mark.parametrize('name,deltas', [
    ('sr_only', {'degradation.blur_prob': 0.0, 'degradation.noise_prob': 0.0,
                 'degradation.jpeg_prob': 0.0, 'degradation.video_codec_prob': 0.0,
                 'degradation.resize_modes': ('bicubic',), 'degradation.resize_probs': (1.0,)}),
    ('deblur_only', {'scale': 1}),
    ('single_frame', {'num_neighbors': 0}),
    ('no_alignment', {'model.use_alignment': False}),
    ('no_attention', {'model.use_attention': False}),
])
@pytest.mark.parametrize('arg', ['runlocal', None])
def test_baseline_configs_override_only_their_deltas(name, deltas, arg, repo, load_config):
  default = _flat(load_config(arg))
  config = config_lib.get_config(repo / 'configs' / f'{name}.py', arg)
  config_lib.check_fields(config)
  got = _flat(config)
  assert set(got) == set(default)
  changed = {k: v for k, v in got.items() if v != default[k]}
  assert changed == deltas
