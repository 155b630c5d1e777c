"""`python -m clarity_jax.benchmark`: throughput, FLOP/s and memory, as JSON.

The command itself is clarity_jax/cli/benchmark.py; this module only keeps its name.
"""

from clarity_jax.cli import common
from clarity_jax.cli import benchmark as command

if __name__ == '__main__':
  common.run(command.main)
