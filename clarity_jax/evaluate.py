"""`python -m clarity_jax.evaluate`: metrics table and comparison pictures against baselines.

The command itself is clarity_jax/cli/evaluate.py; this module only keeps its name.
"""

from clarity_jax.cli import common
from clarity_jax.cli import evaluate as command

if __name__ == '__main__':
  common.run(command.main)
