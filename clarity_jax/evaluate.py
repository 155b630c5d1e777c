"""`python -m clarity_jax.evaluate`: metrics table and comparison pictures against baselines.

The command itself is clarity_jax/evaluation/evaluate.py; this module only keeps its name.
"""

from absl import app

from clarity_jax.evaluation import evaluate as command

if __name__ == '__main__':
  command.define_flags()
  app.run(command.main)
