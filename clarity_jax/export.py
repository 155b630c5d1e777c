"""`python -m clarity_jax.export`: training checkpoint -> inference bundle.

The command itself is clarity_jax/inference/export.py; this module only keeps its name.
"""

from absl import app

from clarity_jax.inference import export as command

if __name__ == '__main__':
  command.define_flags()
  app.run(command.main)
