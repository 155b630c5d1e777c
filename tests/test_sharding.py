"""One mesh, one train step: 8 CPU devices train what one device trains, whether
they split the batch ('data') or also every crop's rows ('space'), compiling once."""

import json
import subprocess
import sys

import jax
import numpy as np
import pytest
from jax.sharding import PartitionSpec as P

from clarity_jax import sharding


def _env(command_env: dict[str, str], devices: int) -> dict[str, str]:
  """command_env with the host platform split into `devices` CPU devices."""
  env = dict(command_env)
  env['XLA_FLAGS'] = (env.get('XLA_FLAGS', '')
                      + f' --xla_force_host_platform_device_count={devices}')
  return env


def test_eight_devices_split_by_batch_or_rows_train_as_one(repo, tiny_overrides, script,
                                                           command_env):
  out = subprocess.run(script('train_on_eight_devices', repo, json.dumps(tiny_overrides)),
                       env=_env(command_env, 8), cwd=repo, capture_output=True, text=True,
                       timeout=900)
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


def _train(repo, tiny_flags, command_env, workdir, devices: int, *extra: str
           ) -> subprocess.CompletedProcess:
  return subprocess.run(
      [sys.executable, '-m', 'clarity_jax.main', f'--workdir={workdir}', *tiny_flags,
       '--config.num_train_steps=2', *extra],
      cwd=repo, env=_env(command_env, devices), capture_output=True, text=True, timeout=600)


def test_trainer_splits_crops_over_the_space_axis(repo, tiny_flags, command_env,
                                                                  final_params, tmp_path):
  """config.mesh.space=4 on 8 devices makes the trainer's mesh 'data' 2 x 'space' 4,
  and it trains. That this mesh's step equals one device's is
  test_eight_devices_split_by_batch_or_rows_train_as_one's."""
  split = _train(repo, tiny_flags, command_env, tmp_path / 'split', 8, '--config.mesh.space=4')
  assert split.returncode == 0, split.stderr[-5000:]
  assert "Mesh {'data': 2, 'space': 4}" in split.stderr
  step, params = final_params(tmp_path / 'split')
  assert step == 2 and all(np.isfinite(np.asarray(x)).all() for x in jax.tree.leaves(params))


@pytest.mark.parametrize('flags, message', [
    (['--config.mesh.space=3'],
     'config.mesh.space: must be an integer >= 1 dividing the 8 devices of each host, got 3'),
    (['--config.mesh.space=8', '--config.data.crop_size=12'],
     'config.data.crop_size: 12 rows do not split evenly over config.mesh.space=8'),
    (['--config.mesh.space=2', '--config.batch_size=2'],
     'config.batch_size: global batch 2 is not divisible by the 4 groups of 2 devices'),
])
def test_space_axis_config_errors_are_one_line(repo, tiny_flags, command_env, tmp_path, flags,
                                               message):
  out = _train(repo, tiny_flags, command_env, tmp_path, 8, *flags)
  assert out.returncode != 0
  assert message in out.stderr.strip().splitlines()[-1], out.stderr[-2000:]
