"""How the commands end on an expected error: one line on stderr, exit status 1.

An expected error is the user's to fix (a missing or broken file, a bad flag or
config field, a diverged run) and its message already says what and where; a
traceback would only bury that line. Anything else is a bug and keeps its traceback.
"""

from collections.abc import Iterator
import contextlib
import sys

from clarity_jax.data import frames


@contextlib.contextmanager
def exit_on_error(*also: type[Exception]) -> Iterator[None]:
  """Turns a PathError, or one of `also`, into 'error: <message>' and exit status 1.

  A decorator of a command's main() (or a `with` block around its work).
  """
  try:
    yield
  except (frames.PathError, *also) as e:
    sys.exit(f'error: {e}')
