"""`python -m clarity_jax.enhance`: restore a video, a folder of frames or an image.

The command itself is clarity_jax/cli/enhance.py; this module only keeps its name.
"""

from clarity_jax.cli import common
from clarity_jax.cli import enhance as command

if __name__ == '__main__':
  common.run(command.main)
