"""One mesh, one train step: 8 CPU devices train what one device trains, whether
they split the batch ('data') or also every crop's rows ('space'), compiling once."""

import json
import os
import subprocess
import sys

import jax
import numpy as np
import pytest
from jax.sharding import PartitionSpec as P

from clarity_jax import sharding

SCRIPT = r'''
import json, sys
import jax, numpy as np
from clarity_jax import config as config_lib, errors, sharding
from clarity_jax.train import state as state_lib, step as ts
assert jax.device_count() == 8, jax.devices()
repo, tiny = sys.argv[1], json.loads(sys.argv[2])

def tiny_config(**fields):
  config = config_lib.get_config(repo + '/configs/default.py', 'runlocal')
  return config_lib.override(config, {**tiny, **fields})

config = tiny_config(batch_size=8, ema_decay=0.99, warmup_steps=0)
config.loss.temporal_weight = 0.1
rng = np.random.default_rng(0)
k, c, s = config.num_neighbors, config.data.crop_size, config.scale
batch = {'lq': rng.random((8, 2 * k + 1, c, c, 3), np.float32),
         'hr': rng.random((8, s * c, s * c, 3), np.float32),
         'lq_next': rng.random((8, 2 * k + 1, c, c, 3), np.float32),
         'hr_next': rng.random((8, s * c, s * c, 3), np.float32)}
graphdef = state_lib.model_graphdef(config)
init = jax.device_get(state_lib.init_state(config))  # on the host: steps donate theirs
results = {}
for name, devices, space in (('1', jax.devices()[:1], 1), ('data 8', jax.devices(), 1),
                             ('data 2 x space 4', jax.devices(), 4)):
  mesh = sharding.make_mesh(space, devices)
  step = ts.jit_train_step(config, graphdef, mesh)
  state = jax.device_put(init, sharding.replicated(mesh))
  placed = sharding.global_batch(mesh, batch)
  for _ in range(3):
    state, metrics = step(state, placed, None)
  assert step._cache_size() == 1, step._cache_size()  # compiled once for 3 steps
  results[name] = (jax.device_get(state.params), float(metrics['loss']))
  lq = placed['lq']
  print(name, 'mesh', dict(mesh.shape), 'lq', lq.sharding.spec,
        'hr', placed['hr'].sharding.spec, 'lq shard', lq.addressable_shards[0].data.shape)
ref, ref_loss = results['1']
moved = max(float(np.abs(a - b).max()) for a, b in
            zip(jax.tree.leaves(init.params), jax.tree.leaves(ref)))
assert moved > 1e-4, moved
for name, (params, loss) in results.items():
  worst = max(float(np.abs(a - b).max()) for a, b in
              zip(jax.tree.leaves(ref), jax.tree.leaves(params)))
  print(name, 'loss', loss, 'max param difference to 1 device', worst)
  assert worst < 1e-5 and abs(loss - ref_loss) < 1e-5, (name, worst, loss, ref_loss)

# Eq. (1) on the device: the same batch of HR windows and parameters trains the same
# on 1 and 8 devices; half of its windows make the round trip through the host's
# codec (train/feed.py), so their LQ must agree before x264 rounds it.
from clarity_jax import data
from clarity_jax.train import feed
dconfig = tiny_config(batch_size=8, warmup_steps=0, **{
    'degradation.where': 'device', 'degradation.video_codec_prob': 0.5,
    'data.loader': 'threads'})
dbatch = next(iter(data.create_train_iterator(dconfig, process_index=0, process_count=1)))
assert 0 < (dbatch['codec_crf'] >= 0).sum() < 8, dbatch['codec_crf']
dgraph = state_lib.model_graphdef(dconfig)
dinit = jax.device_get(state_lib.init_state(dconfig))
dparams, dlq = [], []
for name, devices, space in (('1', jax.devices()[:1], 1), ('data 2 x space 4', jax.devices(), 4)):
  mesh = sharding.make_mesh(space, devices)
  step = ts.jit_train_step(feed.step_config(dconfig), dgraph, mesh)
  placed = next(feed.batches(dconfig, mesh, iter([dbatch])))
  dlq.append(np.asarray(jax.device_get(placed['lq'])))
  state, metrics = step(jax.device_put(dinit, sharding.replicated(mesh)), placed, None)
  dparams.append(jax.device_get(state.params))
print('device degradation: LQ difference 1 vs 8 devices', float(np.abs(dlq[0] - dlq[1]).max()))
assert dlq[0].tobytes() == dlq[1].tobytes()
worst = max(float(np.abs(a - b).max()) for a, b in
            zip(jax.tree.leaves(dparams[0]), jax.tree.leaves(dparams[1])))
print('device degradation: max param difference 1 vs 8 devices', worst)
assert worst < 1e-5, worst
try:
  config_lib.check_fields(tiny_config(batch_size=4))
except errors.ConfigError as e:
  print('ERR', e)
print('OK')
'''


def _env(devices: int) -> dict[str, str]:
  env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL='2')
  env['XLA_FLAGS'] = env.get('XLA_FLAGS', '') + f' --xla_force_host_platform_device_count={devices}'
  return env


def test_eight_devices_split_by_batch_or_rows_train_as_one(repo, tiny_overrides):
  out = subprocess.run([sys.executable, '-c', SCRIPT, str(repo), json.dumps(tiny_overrides)],
                       env=_env(8), cwd=repo, capture_output=True, text=True, timeout=900)
  assert out.returncode == 0, out.stdout + out.stderr[-5000:]
  assert out.stdout.strip().endswith('OK'), out.stdout
  c, k = tiny_overrides['data.crop_size'], tiny_overrides['num_neighbors']
  assert (f"data 8 mesh {{'data': 8, 'space': 1}} lq P('data', None, 'space') "
          f"hr P('data', 'space') lq shard (1, {2 * k + 1}, {c}, {c}, 3)"
          in out.stdout), out.stdout
  assert (f"data 2 x space 4 mesh {{'data': 2, 'space': 4}} lq P('data', None, "
          f"'space') hr P('data', 'space') lq shard (4, {2 * k + 1}, {c // 4}, {c}, 3)"
          in out.stdout), out.stdout
  assert 'ERR config.batch_size: global batch 4 is not divisible by the 8 devices' in out.stdout


def test_mesh_builder_and_shardings():
  mesh = sharding.make_mesh(1, jax.devices()[:1])
  assert mesh.axis_names == ('data', 'space') and dict(mesh.shape) == {'data': 1, 'space': 1}
  assert sharding.frame_sharding(mesh).spec == P('data', 'space')
  assert sharding.window_sharding(mesh).spec == P('data', None, 'space')
  assert sharding.data_sharding(mesh).spec == P('data')
  specs = sharding.batch_shardings(mesh, {'lq': (2, 3, 8, 8, 3), 'hr': np.zeros((2, 4, 4, 3)),
                                          'index': np.zeros(2),
                                          'deg_blur_kernel': (2, 3, 21, 21)})
  assert {k: v.spec for k, v in specs.items()} == {
      'lq': P('data', None, 'space'), 'hr': P('data', 'space'), 'index': P('data'),
      'deg_blur_kernel': P('data')}
  for bad in (0, 2, 'x'):
    with pytest.raises(ValueError, match='space shards do not divide the 1 devices'):
      sharding.make_mesh(bad, jax.devices()[:1])
  batch = {'hr': np.arange(24, dtype=np.float32).reshape(2, 2, 2, 3)}
  placed = sharding.global_batch(mesh, batch)
  np.testing.assert_array_equal(sharding.local_rows(placed['hr']), batch['hr'])


def _train(repo, tiny_flags, workdir, devices: int, *extra: str) -> subprocess.CompletedProcess:
  return subprocess.run(
      [sys.executable, '-m', 'clarity_jax.main', f'--workdir={workdir}', *tiny_flags,
       '--config.num_train_steps=2', *extra],
      cwd=repo, env=_env(devices), capture_output=True, text=True, timeout=600)


def test_trainer_splits_crops_over_space_axis_as_one_device_would(repo, tiny_flags,
                                                                  final_params, tmp_path):
  """config.mesh.space=4 on 8 devices ('data' 2 x 'space' 4) trains the same
  parameters as one device: the split is a configuration change, not another model."""
  split = _train(repo, tiny_flags, tmp_path / 'split', 8, '--config.mesh.space=4')
  assert split.returncode == 0, split.stderr[-5000:]
  assert "Mesh {'data': 2, 'space': 4}" in split.stderr
  single = _train(repo, tiny_flags, tmp_path / 'single', 1)
  assert single.returncode == 0, single.stderr[-5000:]
  (step_a, a), (step_b, b) = final_params(tmp_path / 'split'), final_params(tmp_path / 'single')
  assert step_a == step_b == 2
  for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
    np.testing.assert_allclose(np.asarray(x), np.asarray(y), atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize('flags, message', [
    (['--config.mesh.space=3'],
     'config.mesh.space: must be an integer >= 1 dividing the 8 devices of each host, got 3'),
    (['--config.mesh.space=8', '--config.data.crop_size=12'],
     'config.data.crop_size: 12 rows do not split evenly over config.mesh.space=8'),
    (['--config.mesh.space=2', '--config.batch_size=2'],
     'config.batch_size: global batch 2 is not divisible by the 4 groups of 2 devices'),
])
def test_space_axis_config_errors_are_one_line(repo, tiny_flags, tmp_path, flags, message):
  out = _train(repo, tiny_flags, tmp_path, 8, *flags)
  assert out.returncode != 0
  assert message in out.stderr.strip().splitlines()[-1], out.stderr[-2000:]
