"""Training where TensorFlow is absent (the accelerator hosts): the thread loader,
eq. (1) on the device, checkpoints and an exact resume."""

import subprocess

import jax
import numpy as np
import pytest

from clarity_jax.train import checkpoints


@pytest.fixture
def train(repo, tiny_flags, script, command_env):
  """train(workdir, steps) -> the finished `python -m clarity_jax.main` process, with
  TensorFlow (and so clu) made unimportable."""
  def run(workdir, steps: int) -> subprocess.CompletedProcess:
    return subprocess.run(
        script('without_tensorflow', '-m', 'clarity_jax.main', f'--workdir={workdir}',
               *tiny_flags, '--config.degradation.where=device', '--config.data.loader=auto',
               '--config.degradation.video_codec_prob=0.5',
               # A constant learning rate: num_train_steps, which differs between the
               # runs compared, then does not change the updates.
               '--config.warmup_steps=0', '--config.end_learning_rate_factor=1.0',
               f'--config.num_train_steps={steps}'),
        cwd=repo, env=command_env, capture_output=True, text=True, timeout=600)
  return run


def test_trains_checkpoints_and_resumes_exactly_without_tensorflow(train, final_params,
                                                                   tmp_path):
  straight = train(tmp_path / 'straight', 4)
  assert straight.returncode == 0, straight.stderr[-5000:]
  assert 'metrics go to' in straight.stderr  # clu needs TensorFlow: the JSON-lines writer
  lines = (tmp_path / 'straight' / 'metrics.jsonl').read_text().splitlines()
  assert any('"train/loss"' in line for line in lines)
  first = train(tmp_path / 'resumed', 2)
  assert first.returncode == 0, first.stderr[-5000:]
  second = train(tmp_path / 'resumed', 4)
  assert second.returncode == 0, second.stderr[-5000:]
  assert 'Resumed from' in second.stderr and 'at step 2' in second.stderr
  (step_a, a), (step_b, b) = final_params(tmp_path / 'straight'), final_params(
      tmp_path / 'resumed')
  assert step_a == step_b == 4
  for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
    np.testing.assert_allclose(np.asarray(x), np.asarray(y), atol=1e-6, rtol=1e-5)
  # Not vacuous: steps 3 and 4 moved the parameters of step 2.
  at_2, _, _, _ = checkpoints.restore_params(tmp_path / 'resumed', 2, weights='raw')
  assert max(float(np.abs(np.asarray(x) - np.asarray(y)).max()) for x, y in
             zip(jax.tree.leaves(at_2), jax.tree.leaves(b))) > 1e-5
