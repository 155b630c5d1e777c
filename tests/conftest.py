"""Shared test fixtures: tiny configs and a quiet TensorFlow."""

import os
import pathlib

os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')
# Tests run tiny models for a few steps: XLA's compile time dominates, and skipping
# LLVM's optimisation passes halves it (measured: tests/test_flow.py 47 s -> 21 s).
# Subprocesses inherit it. Set before anything imports jax.
os.environ['XLA_FLAGS'] = ' '.join(
    [os.environ.get('XLA_FLAGS', ''), '--xla_backend_optimization_level=0']).strip()

import pytest

REPO = pathlib.Path(__file__).resolve().parent.parent
SHARED_DATA = REPO.parent / 'shared' / 'data'


def load_config(arg: str = 'runlocal'):
  from clarity_jax import config as config_files  # after XLA_FLAGS is set
  return config_files.get_config(REPO / 'configs' / 'default.py', arg)


def tiny_config(**overrides):
  """The runlocal config shrunk further: a step takes well under a second on CPU."""
  config = load_config('runlocal')
  config.model.variant = 'tiny'
  config.num_neighbors = 1
  config.data.crop_size = 16
  config.batch_size = 2
  config.num_train_steps = 4
  config.warmup_steps = 1
  config.log_every_steps = 2
  config.eval_every_steps = 4
  config.num_eval_batches = 1
  config.checkpoint_every_steps = 2
  for key, value in overrides.items():
    node = config
    *parents, leaf = key.split('.')
    for p in parents:
      node = node[p]
    node[leaf] = value
  return config


# The tiny run on the command line (python -m clarity_jax.main), for subprocess tests.
TINY_FLAGS = [
    '--config=configs/default.py:runlocal', '--config.model.variant=tiny',
    '--config.num_neighbors=1', '--config.data.crop_size=16', '--config.batch_size=2',
    '--config.warmup_steps=1', '--config.log_every_steps=1', '--config.eval_every_steps=1000',
    '--config.num_eval_batches=1', '--config.checkpoint_every_steps=2',
]


def final_params(workdir) -> tuple[int, dict]:
  """(step, parameters) of a workdir's latest checkpoint, read back with orbax alone."""
  import jax  # after XLA_FLAGS is set
  import orbax.checkpoint as ocp
  # Onto this process's first device, whatever mesh wrote the checkpoint.
  here = jax.sharding.SingleDeviceSharding(jax.devices()[0])
  with ocp.CheckpointManager(pathlib.Path(workdir) / 'checkpoints') as manager:
    step = manager.latest_step()
    saved = ocp.StandardCheckpointer().metadata(
        pathlib.Path(workdir) / 'checkpoints' / str(step) / 'state').item_metadata
    target = jax.tree.map(lambda m: jax.ShapeDtypeStruct(m.shape, m.dtype, sharding=here),
                          saved.tree)
    restored = manager.restore(
        step, args=ocp.args.Composite(state=ocp.args.StandardRestore(target)))
  return step, restored.state['params']


@pytest.fixture
def shared_data() -> pathlib.Path:
  if not SHARED_DATA.is_dir():
    pytest.skip('../shared/data is not present beside the checkout')
  return SHARED_DATA
