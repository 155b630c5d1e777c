"""`python -m clarity_jax.main`: train ClarityNetSR (and evaluate it periodically).

The command itself is clarity_jax/cli/train.py; this module only keeps its name.
"""

from absl import app

from clarity_jax.cli import train as command

if __name__ == '__main__':
  app.run(command.main)
