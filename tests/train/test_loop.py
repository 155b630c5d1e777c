"""The training loop: one-line errors, NaN stop, checkpoints, exact resume after
SIGTERM/SIGKILL."""

import os
import pathlib
import signal
import subprocess
import sys
import time

import jax
import numpy as np
import pytest

from clarity_jax import errors
from clarity_jax import sharding
from clarity_jax.media import frames
from clarity_jax.train import checkpoints
from clarity_jax.train import loop
from clarity_jax.train import state as state_lib


@pytest.fixture(scope='module')
def main(repo, tiny_flags):
  """main(workdir, *flags): `python -m clarity_jax.main` of the tiny run, started."""
  env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL='2', PYTHONUNBUFFERED='1')

  def start(workdir, *extra, without_tensorflow: bool = False, **kwargs) -> subprocess.Popen:
    # Without TensorFlow, as on the accelerator hosts: the thread loader, JSON-lines metrics.
    runner = ([str(repo / 'tests' / 'scripts' / 'without_tensorflow.py')]
              if without_tensorflow else [])
    return subprocess.Popen(
        [sys.executable, *runner, '-m', 'clarity_jax.main', f'--workdir={workdir}',
         *tiny_flags, *extra], cwd=repo, env=env, stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT, text=True, **kwargs)
  return start


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


def test_missing_data_path_is_one_line_on_the_command_line(main, tmp_path):
  proc = main(tmp_path / 'w', '--config.data.source=footage',
               f'--config.data.path={tmp_path}/missing')
  out, _ = proc.communicate(timeout=120)
  assert proc.returncode == 1
  last = out.strip().splitlines()[-1]
  assert last == f'error: config.data.path: {tmp_path}/missing: no such file or folder'
  assert not (tmp_path / 'w' / 'checkpoints').exists()


def test_a_corrupt_training_frame_ends_the_run_in_one_line(repo, tiny_flags, tmp_path):
  """A truncated frame once printed TensorFlow tracebacks from the input workers and
  the process never exited; footage now decodes it before training starts."""
  clip = tmp_path / 'data' / 'clip'
  clip.mkdir(parents=True)
  rng = np.random.default_rng(0)
  for i in range(4):
    frames.write_image(clip / f'{i:03d}.png', rng.random((72, 80, 3)))
  bad = clip / '002.png'
  bad.write_bytes(bad.read_bytes()[:300])
  env = {k: v for k, v in os.environ.items() if k != 'TF_CPP_MIN_LOG_LEVEL'}
  proc = subprocess.run(
      [sys.executable, '-m', 'clarity_jax.main', f'--workdir={tmp_path}/w', *tiny_flags,
       '--config.data.source=footage', f'--config.data.path={tmp_path}/data',
       f'--config.data.cache_dir={tmp_path}/cache'],
      cwd=repo, env=env, capture_output=True, text=True, timeout=180)
  assert proc.returncode == 1, proc.stderr[-2000:]
  assert proc.stderr.strip().splitlines()[-1] == (
      f'error: {bad}: not a readable image (truncated or corrupt?)')
  assert 'Traceback' not in proc.stderr + proc.stdout


def test_perceptual_loss_off_is_one_plain_progress_line(tiny_config, capsys):
  """Not absl's 'W1206 19:12:06.340187 ... loop.py:52] ...' warning: the quick
  start's first line reads as the validation lines do."""
  config = tiny_config(loss__perceptual_weight=0.05, loss__vgg_weights='')
  assert loop.make_perceptual(config) == (None, None)
  out, err = capsys.readouterr()
  assert out == ('perceptual loss off: config.loss.vgg_weights is empty (no VGG19 ImageNet '
                 'weights file configured; nothing is downloaded)\n')
  assert err == ''
  assert loop.make_perceptual(tiny_config(loss__perceptual_weight=0.0)) == (None, None)
  assert capsys.readouterr() == ('', '')


def test_nan_loss_stops_before_a_checkpoint(tiny_config, tmp_path):
  # A learning rate this large sends the weights to ~1e30 after one step, so the
  # next forward pass overflows.
  config = tiny_config(learning_rate=1e30, warmup_steps=0, num_train_steps=6,
                       checkpoint_every_steps=5)
  with pytest.raises(loop.NonFiniteLossError, match=r'loss is (nan|inf) at step \d'):
    loop.train_and_evaluate(config, str(tmp_path))
  steps = checkpoints.Checkpointer(str(tmp_path), config)
  assert steps.latest_step() is None
  steps.close()


def test_short_run_writes_checkpoints_events_and_samples(tiny_config, tmp_path, monkeypatch):
  # A relative --workdir, as in the README (orbax itself wants absolute paths).
  monkeypatch.chdir(tmp_path)
  config = tiny_config(num_train_steps=4, eval_every_steps=4, checkpoint_every_steps=2,
                       keep_checkpoints=2, ema_decay=0.9)
  state = loop.train_and_evaluate(config, 'run')
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
  step, meta = checkpoints.read_meta('run')
  assert step == 4 and meta['data_stream']['next_example_index'] == 4 * config.batch_size


def _assert_same_params(a, b, atol=1e-5):
  flat_a, flat_b = jax.tree.leaves(a), jax.tree.leaves(b)
  assert len(flat_a) == len(flat_b)
  for x, y in zip(flat_a, flat_b):
    np.testing.assert_allclose(np.asarray(x), np.asarray(y), atol=atol, rtol=1e-4)


# Eq. (1) in the loader, or on the device: the synthetic camera rendered there and
# the codec's windows through x264 on the host (train/feed.py), half of them. The
# device runs have no TensorFlow, as on the accelerator hosts.
WHERE = {'host': ('--config.degradation.where=host',),
         'device': ('--config.degradation.where=device',
                    '--config.degradation.video_codec_prob=0.5', '--config.data.loader=auto')}


def _start(main, workdir, where, *extra):
  return main(workdir, '--config.num_train_steps=6', *WHERE[where], *extra,
              without_tensorflow=where == 'device')


@pytest.fixture(scope='module')
def reference_runs(main, final_params, tmp_path_factory):
  """reference_runs(where): an uninterrupted 6-step run, once per setting."""
  done = {}

  def run(where):
    if where not in done:
      workdir = tmp_path_factory.mktemp(f'reference_{where}')
      proc = _start(main, workdir, where)
      out, _ = proc.communicate(timeout=600)
      assert proc.returncode == 0, out
      done[where] = final_params(workdir)
    return done[where]
  return run


# Two corners of {SIGTERM, SIGKILL} x {host, device}: what a kill tests (a resume with
# no help from the dying run) does not depend on where eq. (1) runs. The device corner
# is also the training of a host without TensorFlow (the thread loader, JSON metrics).
@pytest.mark.parametrize('sig,where', [(signal.SIGTERM, 'host'), (signal.SIGKILL, 'device')],
                         ids=['SIGTERM', 'SIGKILL-device'])
def test_resume_is_exact(main, final_params, tmp_path, reference_runs, sig, where):
  ref_step, ref_params = reference_runs(where)
  assert ref_step == 6
  proc = _start(main, tmp_path, where)
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
  proc = _start(main, tmp_path, where)
  out, _ = proc.communicate(timeout=600)
  assert proc.returncode == 0, out
  if where == 'device':  # clu needs TensorFlow: the JSON-lines writer took the metrics
    assert 'metrics go to' in out
    assert '"train/loss"' in (tmp_path / 'metrics.jsonl').read_text()
  lines = out.splitlines()
  if interrupted_step < 6:
    assert f'resumed from step {interrupted_step}' in lines
    assert f'at step {interrupted_step}' in out  # the INFO log: 'Resumed from ...'
  else:
    assert 'already trained to step 6; nothing to do' in lines
  step, params = final_params(tmp_path)
  assert step == 6
  _assert_same_params(params, ref_params)
  if sig == signal.SIGTERM:
    # Once more, complete, with the INFO logs off as by default: one line, no
    # progress bar, no checkpoint touched.
    before = sorted(os.listdir(tmp_path / 'checkpoints'))
    proc = _start(main, tmp_path, where, '--verbosity=-1')
    out, _ = proc.communicate(timeout=300)
    assert proc.returncode == 0, out
    assert out == 'already trained to step 6; nothing to do\n'
    assert sorted(os.listdir(tmp_path / 'checkpoints')) == before


def test_resuming_with_another_network_is_one_line(tiny_config, tmp_path):
  """The saved config is compared before any array is restored into the new shapes."""
  config = tiny_config()  # a checkpoint of a fresh state: no train step to compile
  ckpt = checkpoints.Checkpointer(str(tmp_path), config)
  ckpt.save(2, state_lib.create_state(config, sharding.make_mesh(1)),
            {'step': 2, 'data_stream': {'seed': 0, 'batches_consumed': 2,
                                        'next_example_index': 4},
             'config': config.to_json()})
  ckpt.close()
  for field, value, says in (('model__variant', 'small', 'config.model.variant: small '
                              'differs from tiny'),
                             ('num_neighbors', 2, 'config.num_neighbors: 2 differs from 1'),
                             ('ema_decay', 0.9, 'config.ema_decay: 0.9 keeps the EMA copy of '
                              f'the parameters, unlike the checkpoint under {tmp_path}')):
    with pytest.raises(errors.ConfigError) as e:
      loop.train_and_evaluate(tiny_config(num_train_steps=4, **{field: value}), str(tmp_path))
    assert str(e.value).startswith(says) and '\n' not in str(e.value)
