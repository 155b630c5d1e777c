"""`python -m clarity_jax.enhance`: restore a video, a folder of frames or an image.

The command itself is clarity_jax/cli/enhance.py; this module only keeps its name.
"""

from absl import app

from clarity_jax.cli import enhance as command

if __name__ == '__main__':
  app.run(command.main)
