"""The errors a user can fix: each is one line naming what is wrong and where.

Every command prints them as 'error: <message>' with exit status 1
(clarity_jax/cli/common.py); anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import os
from pathlib import Path


class PathError(ValueError):
  """A file or folder the program cannot use: the one-line message '<path>: <what>'.

  PathError(path, problem) builds the message; PathError('<path>: <what>') takes a
  ready one (`path` is then None), as for a culprit that is no file: a flag, a
  dataset name.
  """

  def __init__(self, path: str | os.PathLike, problem: str | None = None):
    self.path = Path(path) if problem is not None else None
    self.problem = problem
    super().__init__(str(path) if problem is None else f'{path}: {problem}')


class ConfigError(ValueError):
  """A config field holds a value the run cannot use: 'config.<field>: <what>'."""
