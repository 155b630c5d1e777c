"""Frames split by rows over 8 CPU devices give the unsplit results (forward and
training step), and the work really is split."""

import os
import subprocess
import sys

import jax
import numpy as np
import pytest
from jax.sharding import PartitionSpec as P

from clarity_jax.inference import spatial
from conftest import REPO, TINY_FLAGS, final_params

PRELUDE = r'''
import sys
sys.path.insert(0, sys.argv[1] + '/tests')
import jax, numpy as np
from flax import nnx
from jax.sharding import PartitionSpec as P
from conftest import tiny_config
from clarity_jax.inference import spatial, train_step as ts
assert jax.device_count() == 8, jax.devices()
config = tiny_config()  # tiny variant, K = 1, x4, flow pyramid of 2 levels
graphdef, state = nnx.split(ts.create_model(config, config.seed))
params = nnx.to_pure_dict(state)
rng = np.random.default_rng(0)
'''

SCRIPT = PRELUDE + r'''
# 61 rows: not a multiple of the 4 'space' shards nor of the model's 4 (2**levels).
lq = rng.random((2, 3, 61, 24, 3), np.float32)
unsplit = jax.jit(lambda p, x: ts.apply_model(graphdef, p, x)).lower(params, lq).compile()
expected = np.asarray(unsplit(params, lq))
mesh = spatial.make_spatial_mesh(2, 4)
got = spatial.restore_split(graphdef, params, lq, mesh)
print('shape', got.shape, 'max difference', float(np.abs(got - expected).max()))
np.testing.assert_allclose(got, expected, atol=1e-5, rtol=0)

fn = spatial.jit_restore_split(graphdef, mesh, 61)
args = (jax.device_put(params, ts.replicated(mesh)), spatial.place_window(lq, mesh))
out = fn(*args)
assert out.shape == (2, 4 * 64, 96, 3) and out.sharding.spec == P('data', 'space'), out.sharding
blocks = sorted((s.index[0].start or 0, s.index[1].start or 0, s.data.shape)
                for s in out.addressable_shards)
assert blocks == [(b, r, (1, 64, 96, 3)) for b in (0, 1) for r in (0, 64, 128, 192)], blocks
assert not np.asarray(out)[:, 244:].any()  # the padding rows come back as zeros
compiled = fn.lower(*args).compile()
hlo = compiled.as_text()
flops = compiled.cost_analysis()['flops'] / unsplit.cost_analysis()['flops']
memory = (compiled.memory_analysis().temp_size_in_bytes
          / unsplit.memory_analysis().temp_size_in_bytes)
print('per-device flops', flops, 'temp memory', memory,
      'collective-permutes', hlo.count('collective-permute('))
# Splitting the batch alone gives 1/2: the rows are split too (ideal 1/8, halos
# and the whole-frame warp cost the rest at this small size).
assert flops < 0.35 and memory < 0.5, (flops, memory)
assert 'collective-permute(' in hlo  # halo rows exchanged between neighbours

for bad, call in [
    ('does not use the 8 devices exactly', lambda: spatial.make_spatial_mesh(3, 3)),
    ("want a mesh with axes ('data', 'space')",
     lambda: spatial.restore_split(graphdef, params, lq, ts.make_mesh())),
    ("batch 1 is not divisible by the 2 devices of the 'data' axis",
     lambda: spatial.restore_split(graphdef, params, lq[:1], mesh)),
]:
  try:
    call()
    raise AssertionError(f'no error for {bad}')
  except ValueError as e:
    assert bad in str(e), e

config.batch_size, config.warmup_steps = 2, 0  # no warmup: the first step moves
k, c, s = config.num_neighbors, config.data.crop_size, config.scale
batch = {'lq': rng.random((2, 2 * k + 1, c, c, 3), np.float32),
         'hr': rng.random((2, s * c, s * c, 3), np.float32)}
# Eager (its ops are compiled already, for the model above); on the host, as both
# steps donate (delete) the state they are given.
state = jax.device_get(ts.init_state(config))
one = ts.make_mesh(jax.devices()[:1])
expected, m1 = ts.jit_train_step(config, graphdef, one)(
    jax.device_put(state, ts.replicated(one)), ts.global_batch(one, batch), None)
mesh = spatial.make_spatial_mesh(2, 4)
placed = spatial.place_batch(mesh, batch)
assert placed['lq'].sharding.spec == P('data', None, 'space')
assert placed['hr'].sharding.spec == P('data', 'space')
assert placed['lq'].addressable_shards[0].data.shape == (1, 2 * k + 1, c // 4, c, 3)
got, m8 = spatial.jit_train_step_split(config, graphdef, mesh, batch)(
    jax.device_put(state, ts.replicated(mesh)), placed, None)
worst = max(float(np.abs(a - b).max()) for a, b in
            zip(jax.tree.leaves(jax.device_get(expected.params)),
                jax.tree.leaves(jax.device_get(got.params))))
moved = max(float(np.abs(a - b).max()) for a, b in
            zip(jax.tree.leaves(state.params), jax.tree.leaves(jax.device_get(got.params))))
print('loss', float(m1['loss']), float(m8['loss']), 'max param difference', worst,
      'step size', moved)
assert abs(float(m1['loss']) - float(m8['loss'])) < 1e-6
assert worst < 1e-5 and moved > 1e-4, (worst, moved)
print('OK')
'''


def _run(script: str) -> str:
  # 8 CPU devices; unoptimised CPU code, which compiles several times faster.
  env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL='2',
             XLA_FLAGS='--xla_force_host_platform_device_count=8 '
                       '--xla_backend_optimization_level=0')
  env['PYTHONPATH'] = os.pathsep.join([str(REPO), env.get('PYTHONPATH', '')])
  out = subprocess.run([sys.executable, '-c', script, str(REPO)], env=env, cwd=REPO,
                       capture_output=True, text=True, timeout=600)
  assert out.returncode == 0, out.stdout + out.stderr[-5000:]
  assert out.stdout.strip().endswith('OK'), out.stdout
  return out.stdout


def test_split_forward_and_train_step_match_unsplit_and_are_split():
  # One subprocess for both (start-up and the model's compiles are paid once).
  out = _run(SCRIPT)
  assert 'shape (2, 244, 96, 3)' in out


def test_padded_rows_and_mesh_checks():
  mesh = spatial.make_spatial_mesh(1, 1, jax.devices()[:1])
  assert mesh.axis_names == ('data', 'space')
  assert [spatial.padded_rows(h, mesh) for h in (1, 7)] == [1, 7]
  assert spatial.frame_sharding(mesh).spec == P('data', 'space')
  assert spatial.window_sharding(mesh).spec == P('data', None, 'space')
  with pytest.raises(ValueError, match='0 x 1'):
    spatial.make_spatial_mesh(0, 1, jax.devices()[:1])


def _train(workdir, devices: int, *extra: str) -> subprocess.CompletedProcess:
  env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL='2')
  env['XLA_FLAGS'] = env.get('XLA_FLAGS', '') + f' --xla_force_host_platform_device_count={devices}'
  env['PYTHONPATH'] = os.pathsep.join([str(REPO), env.get('PYTHONPATH', '')])
  return subprocess.run(
      [sys.executable, '-m', 'clarity_jax.main', f'--workdir={workdir}', *TINY_FLAGS,
       '--config.num_train_steps=2', *extra],
      cwd=REPO, env=env, capture_output=True, text=True, timeout=600)


def test_trainer_splits_crops_over_space_axis_as_one_device_would(tmp_path):
  """config.mesh.space=4 on 8 devices ('data' 2 x 'space' 4) trains the same
  parameters as one device: the split is a configuration change, not another model."""
  split = _train(tmp_path / 'split', 8, '--config.mesh.space=4')
  assert split.returncode == 0, split.stderr[-5000:]
  assert "Mesh {'data': 2, 'space': 4}" in split.stderr
  single = _train(tmp_path / 'single', 1)
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
def test_space_axis_config_errors_are_one_line(tmp_path, flags, message):
  out = _train(tmp_path, 8, *flags)
  assert out.returncode != 0
  assert message in out.stderr.strip().splitlines()[-1], out.stderr[-2000:]
