"""Trains ClarityNetSR: flags and config, then hands off to train.train_and_evaluate.

  python -m clarity_jax.main --config=configs/default.py:runlocal --workdir=runs/quick

Re-running with the same --workdir resumes from its latest checkpoint. On several
hosts, every host runs the same command (see launch/); jax.distributed starts from
--coordinator_address or from the environment of TPU pods and SLURM.
"""

import os
import sys

from absl import app
from absl import flags
from absl import logging
import jax
from ml_collections import config_flags

from clarity_jax import config_checks
from clarity_jax import train
from clarity_jax.data import frames

_WORKDIR = flags.DEFINE_string('workdir', None, 'Checkpoints, logs and samples go here.')
config_flags.DEFINE_config_file('config', None, 'Training config file.', lock_config=True)
_COORDINATOR = flags.DEFINE_string(
    'coordinator_address', None, 'host:port of process 0 for multi-host runs; unset: '
    'auto-detected on TPU pods and SLURM, single process otherwise.')
_NUM_PROCESSES = flags.DEFINE_integer('num_processes', None, 'Hosts in a multi-host run.')
_PROCESS_ID = flags.DEFINE_integer('process_id', None, 'This host, 0..num_processes-1.')
flags.mark_flags_as_required(['config', 'workdir'])


def _init_distributed() -> None:
  if _COORDINATOR.value:
    if jax.default_backend() == 'cpu':
      jax.config.update('jax_cpu_collectives_implementation', 'gloo')
    jax.distributed.initialize(_COORDINATOR.value, num_processes=_NUM_PROCESSES.value,
                               process_id=_PROCESS_ID.value)
  elif int(os.environ.get('SLURM_NTASKS', '1')) > 1 or ',' in os.environ.get(
      'TPU_WORKER_HOSTNAMES', ''):
    jax.distributed.initialize()  # reads the cluster from the environment


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'unexpected arguments: {argv[1:]}')
  _init_distributed()
  logging.info('JAX process %d/%d, devices: %s', jax.process_index(), jax.process_count(),
               jax.devices())
  try:
    train.train_and_evaluate(flags.FLAGS.config, _WORKDIR.value)
  except (config_checks.ConfigError, frames.FrameError, train.NonFiniteLossError) as e:
    sys.exit(f'error: {e}')


if __name__ == '__main__':
  app.run(main)
