"""`python -m clarity_jax.main`: train ClarityNetSR (and evaluate it periodically).

The command itself is clarity_jax/cli/train.py; this module only keeps its name.
"""

from clarity_jax.cli import common
from clarity_jax.cli import train as command

if __name__ == '__main__':
  common.run(command.main)
