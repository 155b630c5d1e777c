"""`python -m clarity_jax.evaluate`: metrics table and comparison pictures against baselines.

The command itself is clarity_jax/cli/evaluate.py; this module only keeps its name.
"""

from absl import app

from clarity_jax.cli import evaluate as command

if __name__ == '__main__':
  app.run(command.main)
