"""Every command that reads a training workdir, on a checkpoint whose array files are
corrupt: one short line naming the checkpoint and the array, exit status 1, and
nothing else on stderr (orbax's abandoned reads once printed a traceback each, and
the error itself carried the whole tensorstore spec)."""

import os
import re
import shutil
import subprocess
import sys

import numpy as np
import pytest

from clarity_jax import sharding
from clarity_jax.media import frames
from clarity_jax.train import checkpoints
from clarity_jax.train import state as state_lib

STEP = 4  # the checkpoint's step


@pytest.fixture(scope='module')
def world(tmp_path_factory, tiny_config):
  """A tiny run's workdir with the array data files of its last checkpoint
  overwritten (each with as many random bytes), and a clip pair for evaluate."""
  root = tmp_path_factory.mktemp('corrupt')
  workdir = root / 'run'
  config = tiny_config()  # a checkpoint of a fresh state: no train step to compile
  ckpt = checkpoints.Checkpointer(str(workdir), config)
  ckpt.save(STEP, state_lib.create_state(config, sharding.make_mesh(1)),
            {'step': STEP, 'data_stream': {'seed': 0, 'batches_consumed': STEP,
                                           'next_example_index': STEP * config.batch_size},
             'config': config.to_json()})
  ckpt.close()
  data = sorted((workdir / 'checkpoints' / str(STEP) / 'state').glob('ocdbt.process_*/d/*'))
  assert data
  rng = np.random.default_rng(0)
  for path in data:
    path.write_bytes(rng.bytes(path.stat().st_size))
  for name in ('lq', 'gt'):
    (root / name / 'clip').mkdir(parents=True)
  for i in range(3):
    frames.write_image(root / 'lq' / 'clip' / f'{i:04d}.png', rng.random((12, 16, 3)))
    frames.write_image(root / 'gt' / 'clip' / f'{i:04d}.png', rng.random((48, 64, 3)))
  return root


def _line(workdir) -> re.Pattern:
  step_dir = re.escape(str(workdir / 'checkpoints' / str(STEP)))
  return re.compile(rf'error: {step_dir}: unreadable array [\w.]+ '
                    r'\([A-Z_]+: truncated or corrupt\?\)')


@pytest.mark.parametrize('command', ['evaluate', 'validate', 'export', 'main'])
def test_a_corrupt_checkpoint_is_one_line(repo, world, tiny_flags, command):
  workdir = world / command
  shutil.copytree(world / 'run', workdir)
  args = {
      'evaluate': [f'--workdir={workdir}', f'--lq={world}/lq', f'--gt={world}/gt',
                   f'--output={world}/eval'],
      # Methods are loaded before the clips are read: a missing clip is not reached.
      'validate': [f'--workdir={workdir}', f'--clips={world}/absent.mp4',
                   f'--cache={world}/cache'],
      'export': [f'--workdir={workdir}', f'--output={world}/bundle'],
      # Resuming the run: the whole state is read.
      'main': [f'--workdir={workdir}', *[f for f in tiny_flags if f != '--verbosity=0'],
               f'--config.num_train_steps={STEP + 2}'],
  }[command]
  proc = subprocess.run([sys.executable, '-m', f'clarity_jax.{command}', *args], cwd=repo,
                        env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL='2'),
                        capture_output=True, text=True, timeout=300)
  assert proc.returncode == 1, proc.stderr[-3000:]
  lines = proc.stderr.splitlines()
  assert len(lines) == 1 and _line(workdir).fullmatch(lines[0]), proc.stderr[-3000:]
  assert proc.stdout == ''
  assert not any((world / name).exists() for name in ('eval', 'cache', 'bundle'))
