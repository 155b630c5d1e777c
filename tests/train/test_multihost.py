"""Multi-host training on one machine: launch/local_multiprocess.sh with 2 processes.

Each process simulates 2 CPU devices, so the 'data' mesh spans 4 devices on 2 hosts
and make_array_from_process_local_data really stitches two hosts' batches. The pair
is preempted (SIGTERM), then resumes; its checkpoints are restored here, in one
process, and checked against this process training on the whole global stream.
"""

import hashlib
import os
import re
import signal
import subprocess
import sys
import time

import jax
import numpy as np

import pytest

from clarity_jax import sharding
from clarity_jax.train import checkpoints
from clarity_jax.train import state as state_lib
from clarity_jax.train import step as ts

# A constant learning rate (no warmup, no decay), so that num_train_steps, which
# differs between the runs below, does not change the updates.
OVERRIDES = dict(batch_size=4, warmup_steps=0, end_learning_rate_factor=1.0,
                 log_every_steps=1, eval_every_steps=1000, num_eval_batches=1,
                 checkpoint_every_steps=2)
# Unoptimised CPU code compiles several times faster (the tiny model's init: ~1 s
# instead of ~10 s); these runs are nearly all compile and hardly any compute.
FAST_COMPILE = {'xla_backend_optimization_level': 0}
FLAGS = ['--config=configs/default.py:runlocal', '--config.model.variant=tiny',
         '--config.num_neighbors=1', '--config.data.crop_size=16',
         *[f'--config.{k}={v}' for k, v in OVERRIDES.items()]]


@pytest.fixture(scope='module')
def launch(repo):
  """launch(log_dir, *args): launch/local_multiprocess.sh started in its own session."""
  def start(log_dir, *args) -> subprocess.Popen:
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL='2', PYTHONUNBUFFERED='1',
               DEVICES_PER_PROCESS='2', LOG_DIR=str(log_dir), PYTHON=sys.executable)
    env['XLA_FLAGS'] = '--xla_backend_optimization_level=0'  # FAST_COMPILE
    # Own session: on a timeout the whole group (script and processes) is killed.
    return subprocess.Popen(['bash', str(repo / 'launch' / 'local_multiprocess.sh'), *args],
                            cwd=repo, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True)
  return start


def _finish(proc: subprocess.Popen, timeout: float = 420) -> str:
  try:
    out, _ = proc.communicate(timeout=timeout)
  except subprocess.TimeoutExpired:
    os.killpg(proc.pid, signal.SIGKILL)
    out, _ = proc.communicate()
    raise AssertionError(f'local_multiprocess.sh still running after {timeout}s:\n{out[-3000:]}')
  return out


def _logs(log_dir) -> list[str]:
  return [(log_dir / f'process_{i}.log').read_text() for i in range(2)]


def _digest(params) -> str:
  """sha256 of the parameter bytes in tree order, computed here with hashlib/NumPy."""
  return hashlib.sha256(b''.join(np.ascontiguousarray(np.asarray(x)).tobytes()
                                 for x in jax.tree.leaves(params))).hexdigest()


def _ends(log: str) -> tuple[int, str]:
  """(step, parameter digest) of the 'Process i ends at step ...' log line."""
  match = re.search(r'Process \d ends at step (\d+) with parameters sha256 ([0-9a-f]{64})', log)
  assert match, log[-3000:]
  return int(match.group(1)), match.group(2)


def _assert_trees_close(a, b, atol=1e-5):
  """Two parameter trees, leaf by leaf, equal to float tolerance."""
  flat_a, flat_b = jax.tree.leaves(a), jax.tree.leaves(b)
  assert len(flat_a) == len(flat_b)
  for x, y in zip(flat_a, flat_b):
    np.testing.assert_allclose(np.asarray(x), np.asarray(y), atol=atol, rtol=1e-4)


def _continue_in_one_process(config, state: state_lib.TrainState, steps: int
                             ) -> state_lib.Params:
  """`steps` more steps of one process on one device, fed the whole global batch
  stream: what the two hosts together must reproduce."""
  from clarity_jax.data import pipeline  # pylint: disable=g-import-not-at-top
  mesh = sharding.make_mesh(1, jax.devices()[:1])
  batches = pipeline.create_train_iterator(config, start_step=int(state.step),
                                           process_index=0, process_count=1)
  batch = sharding.global_batch(mesh, next(batches))
  step_fn = ts.jit_train_step(config, state_lib.model_graphdef(config), mesh).lower(
      state, batch, None).compile(compiler_options=FAST_COMPILE)
  for _ in range(steps):
    state, _ = step_fn(state, batch, None)
    batch = sharding.global_batch(mesh, next(batches))
  return jax.device_get(state.params)


def _restore(config, workdir, step: int):
  """The checkpoint of `step` restored onto this process's single device."""
  rep = sharding.replicated(sharding.make_mesh(1, jax.devices()[:1]))
  abstract = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=rep),
                          jax.eval_shape(lambda: state_lib.init_state(config)))
  ckpt = checkpoints.Checkpointer(str(workdir), config)
  try:
    return ckpt.restore(abstract, step)
  finally:
    ckpt.close()


def test_usage_and_failures_are_reported(repo, launch, tmp_path):
  out = subprocess.run(['bash', str(repo / 'launch' / 'local_multiprocess.sh')],
                       capture_output=True, text=True, timeout=30)
  assert out.returncode == 2
  assert 'Usage:' in out.stderr and 'NUM_PROCESSES' in out.stderr
  # Both processes reject the config (4 devices in all) and the script exits with
  # their status, well before any JAX heartbeat timeout (100 s).
  start = time.time()
  proc = launch(tmp_path / 'logs', '2', f'--workdir={tmp_path / "w"}', *FLAGS,
                 '--config.batch_size=6')
  out = _finish(proc, timeout=300)
  assert proc.returncode == 1, out
  assert 'local_multiprocess: a process failed (exit 1)' in out
  for log in _logs(tmp_path / 'logs'):
    assert 'error: config.batch_size: global batch 6 is not divisible by the 4 devices' in log
  assert time.time() - start < 90


def test_two_processes_train_preempt_resume_and_match_one(launch, tiny_config, tmp_path):
  workdir, config = tmp_path / 'w', tiny_config(**OVERRIDES)

  # 1. The pair trains until SIGTERM (to the script, which passes it on) after its
  #    first step: both hosts agree on a step (orbax reached_preemption), save it
  #    together and stop.
  proc = launch(tmp_path / 'a', '2', f'--workdir={workdir}', *FLAGS,
                 '--config.num_train_steps=1000')
  deadline = time.time() + 400
  first_log = tmp_path / 'a' / 'process_0.log'
  while not (first_log.exists() and ' train/loss=' in first_log.read_text()):
    assert proc.poll() is None, proc.communicate()[0][-3000:]
    assert time.time() < deadline, 'no training step logged in time'
    time.sleep(0.2)
  proc.send_signal(signal.SIGTERM)
  out = _finish(proc)
  assert proc.returncode == 0, out
  logs = _logs(tmp_path / 'a')
  stopped = [re.search(r'Stopped for preemption at step (\d+)', log) for log in logs]
  assert all(stopped), out[-3000:]
  preempted = int(stopped[0].group(1))
  assert preempted == int(stopped[1].group(1)) and 1 <= preempted < 100
  for log in logs:
    assert "Mesh {'data': 4, 'space': 1} over 4 devices on 2 hosts." in log
  (step_a0, digest_a0), (step_a1, digest_a1) = map(_ends, logs)
  assert step_a0 == step_a1 == preempted and digest_a0 == digest_a1
  # Metrics come from process 0 only: one TensorBoard events file.
  assert len(list(workdir.glob('events.out.tfevents.*'))) == 1

  # 2. The pair resumes from its checkpoint for 2 more steps.
  final = preempted + 2
  proc = launch(tmp_path / 'b', '2', f'--workdir={workdir}', *FLAGS,
                 f'--config.num_train_steps={final}')
  out = _finish(proc)
  assert proc.returncode == 0, out
  logs = _logs(tmp_path / 'b')
  for log in logs:
    assert f'at step {preempted} (data stream at example {4 * preempted})' in log
  (step_b0, digest_b0), (step_b1, digest_b1) = map(_ends, logs)
  assert step_b0 == step_b1 == final and digest_b0 == digest_b1

  # 3. Here, one process with one device: both checkpoints restore and hold exactly
  #    the parameters the hosts reported; continuing the first one here on the whole
  #    global stream gives the second (so the hosts' batches were disjoint and
  #    complete, and the gradients were averaged over both).
  restored = {}
  for step, digest in ((preempted, digest_a0), (final, digest_b0)):
    state, meta = _restore(config, workdir, step)
    assert int(state.step) == step and meta['data_stream']['next_example_index'] == 4 * step
    assert _digest(state.params) == digest
    restored[step] = state
  before, after = (jax.device_get(restored[s].params) for s in (preempted, final))
  # Training moved the parameters: the comparison below is not vacuous.
  moved = max(float(np.abs(a - b).max())
              for a, b in zip(jax.tree.leaves(before), jax.tree.leaves(after)))
  assert moved > 1e-4
  _assert_trees_close(_continue_in_one_process(config, restored[preempted], 2), after)
