"""`python -m clarity_jax.validate`: gain over bicubic on held-out real footage, mild to heavy.

The command itself is clarity_jax/cli/validate.py; this module only keeps its name.
"""

from clarity_jax.cli import common
from clarity_jax.cli import validate as command

if __name__ == '__main__':
  common.run(command.main)
