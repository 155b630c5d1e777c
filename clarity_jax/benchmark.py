"""`python -m clarity_jax.benchmark`: throughput, FLOP/s and memory, as JSON.

The command itself is clarity_jax/cli/benchmark.py; this module only keeps its name.
"""

from absl import app

from clarity_jax.cli import benchmark as command

if __name__ == '__main__':
  app.run(command.main)
