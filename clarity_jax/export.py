"""`python -m clarity_jax.export`: training checkpoint -> inference bundle.

The command itself is clarity_jax/cli/export.py; this module only keeps its name.
"""

from clarity_jax.cli import common
from clarity_jax.cli import export as command

if __name__ == '__main__':
  common.run(command.main)
