"""cli/train.py: how the processes of a multi-host run leave on an error."""

import socket
import subprocess
import sys
import textwrap

# One process of a two-process run: process 1 fails 3 s after process 0, as a slow
# host does on a config both reject.
_PROCESS = textwrap.dedent("""
    import sys, time
    import jax
    from clarity_jax import errors
    from clarity_jax.cli import common, train
    port, pid = sys.argv[1], int(sys.argv[2])
    jax.config.update('jax_cpu_collectives_implementation', 'gloo')
    jax.distributed.initialize(f'127.0.0.1:{port}', num_processes=2, process_id=pid)
    with common.exit_on_error(hard_exit=True, before_exit=train._leave_together):
      jax.devices()
      if pid == 1:
        time.sleep(3)
      raise errors.ConfigError(f'process {pid} rejects the config')
""")


def _free_port() -> int:
  with socket.socket() as s:
    s.bind(('127.0.0.1', 0))
    return s.getsockname()[1]


def test_every_process_reports_its_error_before_the_coordinator_leaves(repo):
  # Process 0 hosts the coordination service: had it left at once, process 1 would
  # be aborted by JAX ('the JAX distributed service detected fatal errors', status
  # 134) before reporting, or right after.
  port = _free_port()
  procs = [subprocess.Popen([sys.executable, '-c', _PROCESS, str(port), str(i)], cwd=repo,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
           for i in range(2)]
  outs = [p.communicate(timeout=120)[0] for p in procs]
  for i, (proc, out) in enumerate(zip(procs, outs)):
    assert proc.returncode == 1, out[-2000:]
    assert f'error: process {i} rejects the config' in out
