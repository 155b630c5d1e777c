"""Trains ClarityNetSR: flags and config, then hands off to train/loop.train_and_evaluate.

  python -m clarity_jax.main --config=configs/default.py:runlocal --workdir=runs/quick

Re-running with the same --workdir resumes from its latest checkpoint. On several
hosts, every host runs the same command (see launch/); jax.distributed starts from
--coordinator_address (or JAX_COORDINATOR_ADDRESS and friends) or from what JAX
detects of the cluster (SLURM, Open MPI, TPU pods: --distributed=on).
"""

import os

from absl import app
from absl import flags
from absl import logging
import jax
from ml_collections import config_flags
from orbax.checkpoint import multihost

from clarity_jax.cli import common
from clarity_jax.inference import warm_start
from clarity_jax.train import loop

_WORKDIR = flags.DEFINE_string('workdir', None, 'Checkpoints, logs and samples go here.')
config_flags.DEFINE_config_file('config', None, 'Training config file.', lock_config=True)
_DISTRIBUTED = flags.DEFINE_enum(
    'distributed', 'auto', ['auto', 'on', 'off'],
    'Multi-host start-up (jax.distributed.initialize). auto: when a coordinator is given '
    '(flags below or JAX_COORDINATOR_ADDRESS / JAX_NUM_PROCESSES / JAX_PROCESS_ID) or a '
    'multi-process launcher is detected (SLURM, Open MPI, GKE TPU); on: always, JAX '
    'detecting what is not given (Cloud TPU VM pods); off: one process.')
_COORDINATOR = flags.DEFINE_string(
    'coordinator_address', None, 'host:port of process 0 in a multi-host run '
    '(default: $JAX_COORDINATOR_ADDRESS).')
_NUM_PROCESSES = flags.DEFINE_integer(
    'num_processes', None, 'Processes in a multi-host run (default: $JAX_NUM_PROCESSES).')
_PROCESS_ID = flags.DEFINE_integer(
    'process_id', None, 'This process, 0..num_processes-1 (default: $JAX_PROCESS_ID).')
flags.mark_flags_as_required(['config', 'workdir'])

# Environment variables of the launchers JAX detects by itself (srun, mpirun, GKE).
_LAUNCHER_SIZES = ('SLURM_STEP_NUM_TASKS', 'OMPI_COMM_WORLD_SIZE')
_LAUNCHER_MARKS = ('TPU_WORKER_HOSTNAMES', 'TPU_PROCESS_ADDRESSES', 'MEGASCALE_COORDINATOR_ADDRESS')


def _flag_or_env(flag: flags.FlagHolder, env: str, kind: type = str):
  value = flag.value if flag.value is not None else os.environ.get(env) or None
  try:
    return None if value is None else kind(value)
  except ValueError:
    raise app.UsageError(f'{env}={value!r}: not an integer') from None


def _init_distributed() -> None:
  """Joins the other processes before anything touches a device (JAX requires it)."""
  address = _flag_or_env(_COORDINATOR, 'JAX_COORDINATOR_ADDRESS')
  num_processes = _flag_or_env(_NUM_PROCESSES, 'JAX_NUM_PROCESSES', int)
  process_id = _flag_or_env(_PROCESS_ID, 'JAX_PROCESS_ID', int)
  launched = (any(int(os.environ.get(v, '1')) > 1 for v in _LAUNCHER_SIZES)
              or any(os.environ.get(v) for v in _LAUNCHER_MARKS))
  explicit = (address, num_processes, process_id) != (None, None, None)
  if _DISTRIBUTED.value == 'off' or (_DISTRIBUTED.value == 'auto' and not (explicit or launched)):
    return
  # CPU processes exchange gradients through gloo (the default of recent JAX, set for
  # older ones); GPU and TPU clients do not read this.
  if 'JAX_CPU_COLLECTIVES_IMPLEMENTATION' not in os.environ:
    jax.config.update('jax_cpu_collectives_implementation', 'gloo')
  jax.distributed.initialize(address, num_processes=num_processes, process_id=process_id)


# How long a failed process of a multi-host run waits for the others to fail too.
LEAVE_TOGETHER_SECONDS = 30


def _leave_together() -> None:
  """After an error in a multi-host run (its message already printed), waits at most
  LEAVE_TOGETHER_SECONDS for every process to fail as well, then disconnects cleanly.

  A bad config fails on every host, but not at the same instant. Process 0 hosts the
  coordination service: had it left at once, JAX would abort a host still starting
  or still reporting ('the JAX distributed service detected fatal errors') instead of
  letting it name the config field. jax.distributed.shutdown makes process 0 wait
  until the others have disconnected. A host failing alone (the others blocked in a
  collective) just leaves after the wait.
  """
  if not jax.distributed.is_initialized():
    return
  try:
    multihost.get_jax_distributed_client().wait_at_barrier(
        'clarity_jax_leave_on_error', LEAVE_TOGETHER_SECONDS * 1000)
    jax.distributed.shutdown()
  except Exception:  # pylint: disable=broad-except
    pass  # timed out, or a peer already gone: leave with this host's own error


@common.exit_on_error(loop.NonFiniteLossError, hard_exit=True, before_exit=_leave_together)
def main(argv: list[str]) -> None:
  # Quiet: progress bar, validation lines and warnings; --verbosity=0 for INFO logs.
  # SIGTERM means preemption, handled by the loop.
  common.start(argv, quiet=True, sigterm_interrupts=False)
  _init_distributed()
  logging.info('JAX process %d/%d, devices: %s', jax.process_index(),
               jax.process_count(), jax.devices())
  config = flags.FLAGS.config
  init_from = (lambda: warm_start.load(config)) if config.get('init_from') else None
  loop.train_and_evaluate(config, _WORKDIR.value, init_from)
