"""Training: config errors, NaN stop, checkpoints, exact resume after SIGTERM/SIGKILL."""

import os
import pathlib
import signal
import subprocess
import sys
import time

import jax
import numpy as np
import pytest

from clarity_jax.train import checkpoints as checkpointing
from clarity_jax import config as config_checks
from clarity_jax.train import loop as train
from clarity_jax.train import step as ts
from conftest import REPO, TINY_FLAGS, final_params, tiny_config

def _env():
  env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL='2', PYTHONUNBUFFERED='1')
  env['PYTHONPATH'] = os.pathsep.join([str(REPO), env.get('PYTHONPATH', '')])
  return env


def _main(workdir, *extra, **kwargs) -> subprocess.Popen:
  return subprocess.Popen(
      [sys.executable, '-m', 'clarity_jax.main', f'--workdir={workdir}', *TINY_FLAGS, *extra],
      cwd=REPO, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
      **kwargs)


def _wait_for_checkpoint(workdir, step: int, proc: subprocess.Popen, timeout=300) -> None:
  """Until orbax has finalised (renamed into place) the checkpoint of `step`."""
  path = pathlib.Path(workdir) / 'checkpoints' / str(step)
  deadline = time.time() + timeout
  while time.time() < deadline:
    if path.is_dir() and (path / '_CHECKPOINT_METADATA').exists():
      return
    if proc.poll() is not None:
      raise AssertionError(f'training exited early:\n{proc.stdout.read()}')
    time.sleep(0.2)
  proc.kill()
  raise AssertionError(f'no checkpoint {path} after {timeout}s')


@pytest.mark.parametrize('field,value,message', [
    ('scale', 3, 'config.scale: must be 1, 2 or 4'),
    ('num_neighbors', -1, 'config.num_neighbors: K must be an integer >= 0'),
    ('data.source', 'frame_folders', 'config.data.path: is empty'),
    ('batch_size', 0, 'config.batch_size: must be positive'),
])
def test_config_errors_name_the_field(field, value, message):
  with pytest.raises(errors.ConfigError, match=message):
    config_checks.validate(tiny_config(**{field: value}))


def test_missing_data_path_is_one_line_on_the_command_line(tmp_path):
  proc = _main(tmp_path / 'w', '--config.data.source=frame_folders',
               f'--config.data.path={tmp_path}/missing')
  out, _ = proc.communicate(timeout=120)
  assert proc.returncode == 1
  last = out.strip().splitlines()[-1]
  assert last == f'error: config.data.path: {tmp_path}/missing: no such directory'
  assert not (tmp_path / 'w' / 'checkpoints').exists()


def test_nan_loss_stops_before_a_checkpoint(tmp_path):
  # A learning rate this large sends the weights to ~1e30 after one step, so the
  # next forward pass overflows.
  config = tiny_config(learning_rate=1e30, warmup_steps=0, num_train_steps=6,
                       checkpoint_every_steps=5)
  with pytest.raises(train.NonFiniteLossError, match=r'loss is (nan|inf) at step \d'):
    train.train_and_evaluate(config, str(tmp_path))
  steps = checkpointing.Checkpointer(str(tmp_path), config)
  assert steps.latest_step() is None
  steps.close()


def test_short_run_writes_checkpoints_events_and_samples(tmp_path, monkeypatch):
  # A relative --workdir, as in the README (orbax itself wants absolute paths).
  monkeypatch.chdir(tmp_path)
  config = tiny_config(num_train_steps=4, eval_every_steps=4, checkpoint_every_steps=2,
                       keep_checkpoints=2, ema_decay=0.9)
  state = train.train_and_evaluate(config, 'run')
  workdir = tmp_path / 'run'
  assert int(state.step) == 4
  assert sorted(os.listdir(workdir / 'checkpoints')) == ['2', '4']
  assert list(workdir.glob('events.out.tfevents.*'))
  samples = list((workdir / 'samples').glob('step_*.png'))
  assert [p.name for p in samples] == ['step_0000004.png']
  # EMA and raw weights both kept and different after training.
  leaves = jax.tree.leaves(jax.tree.map(lambda a, b: float(np.abs(a - b).max()),
                                        state.params, state.ema_params))
  assert max(leaves) > 0
  step, meta = checkpointing.read_meta('run')
  assert step == 4 and meta['data_stream']['next_example_index'] == 4 * config.batch_size


def _assert_same_params(a, b, atol=1e-5):
  flat_a, flat_b = jax.tree.leaves(a), jax.tree.leaves(b)
  assert len(flat_a) == len(flat_b)
  for x, y in zip(flat_a, flat_b):
    np.testing.assert_allclose(np.asarray(x), np.asarray(y), atol=atol, rtol=1e-4)


@pytest.fixture(scope='module')
def reference_run(tmp_path_factory):
  """An uninterrupted 6-step run."""
  workdir = tmp_path_factory.mktemp('reference')
  proc = _main(workdir, '--config.num_train_steps=6')
  out, _ = proc.communicate(timeout=600)
  assert proc.returncode == 0, out
  return final_params(workdir)


@pytest.mark.parametrize('sig', [signal.SIGTERM, signal.SIGKILL], ids=['SIGTERM', 'SIGKILL'])
def test_resume_is_exact(tmp_path, reference_run, sig):
  ref_step, ref_params = reference_run
  assert ref_step == 6
  proc = _main(tmp_path, '--config.num_train_steps=6')
  _wait_for_checkpoint(tmp_path, 2, proc)
  proc.send_signal(sig)
  out, _ = proc.communicate(timeout=300)
  interrupted_step, _ = final_params(tmp_path)
  if sig == signal.SIGTERM:
    assert proc.returncode == 0, out
    assert 'Stopped for preemption' in out
  else:
    assert proc.returncode == -signal.SIGKILL
  assert 2 <= interrupted_step <= 6
  proc = _main(tmp_path, '--config.num_train_steps=6')
  out, _ = proc.communicate(timeout=600)
  assert proc.returncode == 0, out
  if interrupted_step < 6:
    assert f'at step {interrupted_step}' in out  # the 'Resumed from ...' line
  step, params = final_params(tmp_path)
  assert step == 6
  _assert_same_params(params, ref_params)


SHARDING_SCRIPT = r'''
import os, sys
sys.path.insert(0, sys.argv[1] + '/tests')
import jax, numpy as np
from conftest import tiny_config
from clarity_jax import config as config_checks, train_step as ts
from clarity_jax import errors
assert jax.device_count() == 8, jax.devices()
config = tiny_config(batch_size=8, ema_decay=0.99)
config.loss.temporal_weight = 0.1
rng = np.random.default_rng(0)
k, c, s = config.num_neighbors, config.data.crop_size, config.scale
batch = {'lq': rng.random((8, 2 * k + 1, c, c, 3), np.float32),
         'hr': rng.random((8, s * c, s * c, 3), np.float32),
         'lq_next': rng.random((8, 2 * k + 1, c, c, 3), np.float32),
         'hr_next': rng.random((8, s * c, s * c, 3), np.float32)}
graphdef = ts.model_graphdef(config)
results = []
for devices in (jax.devices()[:1], jax.devices()):
  mesh = ts.make_mesh(devices)
  state = ts.create_state(config, mesh)
  step = ts.jit_train_step(config, graphdef, mesh)
  for _ in range(3):
    state, metrics = step(state, ts.global_batch(mesh, batch), None)
  assert step._cache_size() == 1, step._cache_size()  # compiled once for 3 steps
  results.append(jax.device_get(state.params))
  sharding = jax.tree.leaves(ts.global_batch(mesh, batch))[0].sharding
  print('devices', len(devices), 'batch sharding', sharding.spec, 'loss', float(metrics['loss']))
flat1, flat8 = jax.tree.leaves(results[0]), jax.tree.leaves(results[1])
worst = max(float(np.abs(a - b).max()) for a, b in zip(flat1, flat8))
print('max param difference 1 vs 8 devices', worst)
assert worst < 1e-5, worst
try:
  config_checks.validate(tiny_config(batch_size=4))
except errors.ConfigError as e:
  print('ERR', e)
'''


def test_eight_devices_match_one_and_compile_once(tmp_path):
  env = _env()
  env['XLA_FLAGS'] += ' --xla_force_host_platform_device_count=8'
  out = subprocess.run([sys.executable, '-c', SHARDING_SCRIPT, str(REPO)], env=env, cwd=REPO,
                       capture_output=True, text=True, timeout=600)
  assert out.returncode == 0, out.stdout + out.stderr
  assert "batch sharding P('data',)" in out.stdout
  assert ('ERR config.batch_size: global batch 4 is not divisible by the 8 devices'
          in out.stdout)
