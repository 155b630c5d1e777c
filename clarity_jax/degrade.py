"""`python -m clarity_jax.degrade`: build degraded evaluation sets from sharp footage (eq. 1).

The command itself is clarity_jax/cli/degrade.py; this module only keeps its name.
"""

from clarity_jax.cli import common
from clarity_jax.cli import degrade as command

if __name__ == '__main__':
  common.run(command.main)
