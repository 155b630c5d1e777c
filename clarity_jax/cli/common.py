"""How every command starts and ends: no stray arguments, and an expected error
is one line on stderr with exit status 1.

An expected error is the user's to fix (a missing or broken file, a bad flag or
config field, a diverged run) and its message already says what and where; a
traceback would only bury that line. Anything else is a bug and keeps its traceback.
"""

from collections.abc import Callable, Iterator
import contextlib
import os
import signal
import sys
from typing import NamedTuple

from absl import app
from absl import flags
from absl import logging

from clarity_jax import config as config_lib
from clarity_jax import errors
from clarity_jax.inference import engines


def run(main) -> None:
  """app.run(main), with command-line mistakes as one line (parse_flags)."""
  app.run(main, flags_parser=parse_flags)


def parse_flags(argv: list[str]) -> list[str]:
  """absl's flag parsing, where a missing config file, an unknown config field or a
  bad flag is 'error: <what>' and exit status 1, not absl's usage text or an
  ml_collections traceback."""
  config = _config_file(argv)
  if config is not None and not os.path.isfile(config):
    sys.exit(f'error: {config}: no such config file')
  try:
    return flags.FLAGS(argv)
  except flags.Error as e:
    sys.exit(f'error: {str(e).splitlines()[0]}')
  except (AttributeError, KeyError):  # an override of a field the config lacks
    field = _unknown_field(argv, config)
    if field is None:
      raise
    sys.exit(f'error: --config.{field}: no such config field in {config}')


def _config_file(argv: list[str]) -> str | None:
  """The file of --config=PATH[:ARGS], if given."""
  for arg in argv[1:]:
    if arg.startswith('--config='):
      return arg[len('--config='):].split(':', 1)[0]
  return None


def _unknown_field(argv: list[str], config_file: str | None) -> str | None:
  """The first --config.FIELD=... whose FIELD the config does not have."""
  if config_file is None:
    return None
  spec = next(a for a in argv[1:] if a.startswith('--config='))[len('--config='):]
  config = config_lib.get_config(config_file, spec.split(':', 1)[1] if ':' in spec else None)
  for arg in argv[1:]:
    if arg.startswith('--config.'):
      field = arg[len('--config.'):].split('=', 1)[0]
      try:
        config_lib.override(config.copy_and_resolve_references(), {field: None})
      except errors.ConfigError:
        return field
  return None


def start(argv: list[str], *, quiet: bool = False, sigterm_interrupts: bool = True) -> None:
  """The first line of a command's main(): refuses stray arguments, and with
  `quiet` turns absl's INFO logs off (orbax logs every file it touches) unless
  --verbosity was given, so that an error stays the one line it should be.

  SIGTERM then stops the command as Ctrl-C does, through every cleanup on the way
  out (temporary outputs removed), instead of killing it where it stands. Training
  passes sigterm_interrupts=False: there SIGTERM means preemption (save, then stop).
  """
  if len(argv) > 1:  # one line, not absl's usage text
    sys.exit(f'error: unexpected arguments: {argv[1:]}')
  if sigterm_interrupts:
    signal.signal(signal.SIGTERM, _interrupt)
    # Ctrl-C too, even when the shell that started us ignored SIGINT (a background
    # job): Python then never installs its own handler.
    signal.signal(signal.SIGINT, signal.default_int_handler)
  if quiet and not flags.FLAGS['verbosity'].present:
    logging.set_verbosity(logging.WARNING)


def _interrupt(signum: int, frame) -> None:
  del signum, frame
  raise KeyboardInterrupt


@contextlib.contextmanager
def exit_on_error(*also: type[Exception], hard_exit: bool = False,
                  before_exit: Callable[[], None] | None = None) -> Iterator[None]:
  """Turns a PathError, a ConfigError, an OSError naming a file (permission denied,
  disk full) or one of `also` into 'error: <message>' and exit status 1, and Ctrl-C
  into 'interrupted' and exit status 130.

  A decorator of a command's main() (or a `with` block around its work). With
  `hard_exit` (training) the process ends right after the message: TensorFlow's
  input threads, still running, would otherwise abort the interpreter's shutdown
  ('terminate called without an active exception', status 134) or hang it.
  Everything the command owns (checkpoints, outputs) is closed on the way out.
  `before_exit` runs after an error's message is printed, before the process ends
  (the hosts of a multi-host run wait for each other there).
  """
  def leave(message: str, status: int) -> None:
    if status == 1 and before_exit is not None:
      print(message, file=sys.stderr, flush=True)
      before_exit()
    elif hard_exit or status != 1:
      print(message, file=sys.stderr, flush=True)
    else:
      sys.exit(message)  # printed by the interpreter, status 1
    if hard_exit:
      sys.stdout.flush()
      os._exit(status)  # pylint: disable=protected-access
    sys.exit(status)

  try:
    yield
  except (errors.PathError, errors.ConfigError, *also) as e:
    leave(f'error: {e}', 1)
  except OSError as e:  # a read-only folder, a full disk: the user's to fix, if named
    if not e.filename:
      raise
    leave(f'error: {e.filename}: {e.strerror or e}', 1)
  except KeyboardInterrupt:  # Ctrl-C: outputs were already cleaned up on the way out
    leave('\ninterrupted', 130)


class RestorerFlags(NamedTuple):
  """The flags of every command that restores with a model (enhance, evaluate)."""
  tile: flags.FlagHolder[int]
  tile_overlap: flags.FlagHolder[int]
  batch: flags.FlagHolder[int]
  dtype: flags.FlagHolder[str]
  progress: flags.FlagHolder[bool]
  engine: flags.FlagHolder[str]


def define_restorer_flags() -> RestorerFlags:
  """Defines them once for all such commands: the same name means the same thing,
  with the same default, wherever it appears."""
  return RestorerFlags(
      tile=flags.DEFINE_integer(
          'tile', 256, 'Largest tile side in LQ pixels: larger frames are restored in '
          'overlapping tiles blended without seams, so memory does not grow with the '
          'frame; as few tiles as this allows, each no longer than they need (multiples '
          'of 32); 0: whole frames.', lower_bound=0),
      tile_overlap=flags.DEFINE_integer(
          'tile_overlap', 16, 'Overlap of neighbouring tiles in LQ pixels (cross-faded).',
          lower_bound=0),
      batch=flags.DEFINE_integer('batch', 4, 'Windows restored per model call.',
                                 lower_bound=1),
      dtype=flags.DEFINE_enum('dtype', 'float32', ['float32', 'bfloat16', 'int8'],
                              'Computation dtype of bundles: bfloat16 on GPU/TPU, and with '
                              '--engine=openvino where the CPU has it; int8 with '
                              '--engine=openvino (export --int8_calibration). A training '
                              "workdir computes in its config's."),
      progress=flags.DEFINE_bool('progress', True, 'Show a progress bar.'),
      engine=flags.DEFINE_enum(
          'engine', 'jax', list(engines.ENGINES), 'What runs bundles: jax (XLA), or '
          "onnxruntime / openvino on the bundle's ONNX graph (export --format=onnx; the "
          'runtimes are the extra ".[deploy]"). The same tiles and outputs, within 1/255.'))

