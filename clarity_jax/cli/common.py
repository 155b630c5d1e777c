"""How the commands start and end: no stray arguments, and an expected error is
one line on stderr with exit status 1.

An expected error is the user's to fix (a missing or broken file, a bad flag or
config field, a diverged run) and its message already says what and where; a
traceback would only bury that line. Anything else is a bug and keeps its traceback.
"""

from collections.abc import Iterator
import contextlib
import sys

from absl import app
from absl import flags
from absl import logging
from clarity_jax import errors



def start(argv: list[str], *, quiet: bool = False) -> None:
  """The first line of a command's main(): refuses stray arguments, and with
  `quiet` turns absl's INFO logs off (orbax logs every file it touches) unless
  --verbosity was given, so that an error stays the one line it should be."""
  if len(argv) > 1:
    raise app.UsageError(f'unexpected arguments: {argv[1:]}')
  if quiet and not flags.FLAGS['verbosity'].present:
    logging.set_verbosity(logging.WARNING)


@contextlib.contextmanager
def exit_on_error(*also: type[Exception]) -> Iterator[None]:
  """Turns a PathError, or one of `also`, into 'error: <message>' and exit status 1.

  A decorator of a command's main() (or a `with` block around its work).
  """
  try:
    yield
  except (errors.PathError, errors.ConfigError, *also) as e:
    sys.exit(f'error: {e}')
