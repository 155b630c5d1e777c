"""cli/common: expected errors end a command with one line, bugs do not."""

import os
import importlib
import pkgutil
import subprocess
import sys

import pytest

import clarity_jax
from clarity_jax import errors
from clarity_jax.cli import common


def _path_errors() -> list[type[errors.PathError]]:
  """Every PathError subclass defined anywhere in the library (cli and the command
  shims aside: they define flags when imported)."""
  for info in pkgutil.walk_packages(clarity_jax.__path__, 'clarity_jax.'):
    if not info.name.startswith('clarity_jax.cli') and info.name.count('.') > 1:
      importlib.import_module(info.name)
  found, todo = [], [errors.PathError]
  while todo:
    for sub in todo.pop().__subclasses__():
      found.append(sub)
      todo.append(sub)
  return sorted(found, key=lambda c: f'{c.__module__}.{c.__qualname__}')


def test_the_library_defines_its_file_errors_as_path_errors():
  names = {c.__name__ for c in _path_errors()}
  assert {'FrameError', 'BundleError', 'CheckpointError', 'MediaError', 'ClipError',
          'WeightsFileError'} <= names, names


@pytest.mark.parametrize('error', _path_errors(), ids=lambda c: c.__name__)
def test_every_file_error_is_a_path_error_and_exits_with_its_line(error, tmp_path):
  @common.exit_on_error()
  def main():
    raise error(tmp_path / 'clip.mp4', 'broken')

  with pytest.raises(SystemExit) as info:
    main()
  assert info.value.code == f'error: {tmp_path / "clip.mp4"}: broken'  # stderr, status 1


def test_config_errors_exit_with_their_line():
  with pytest.raises(SystemExit) as info:
    with common.exit_on_error():
      raise errors.ConfigError('config.scale: must be 1, 2 or 4, got 3')
  assert info.value.code == 'error: config.scale: must be 1, 2 or 4, got 3'


def test_extra_errors_exit_and_others_keep_their_traceback():
  with pytest.raises(SystemExit) as info:
    with common.exit_on_error(RuntimeError):
      raise RuntimeError('train failed with exit status 2')
  assert info.value.code == 'error: train failed with exit status 2'
  with pytest.raises(KeyError):
    with common.exit_on_error(RuntimeError):
      raise KeyError('a bug')


def test_start_refuses_stray_arguments_and_quiets_info_logs():
  from absl import logging  # pylint: disable=g-import-not-at-top
  with pytest.raises(SystemExit) as e:
    common.start(['prog', 'extra'])
  assert e.value.code == "error: unexpected arguments: ['extra']"
  before = logging.get_verbosity()
  try:
    logging.set_verbosity(logging.INFO)
    common.start(['prog'])
    assert logging.get_verbosity() == logging.INFO  # not quiet: left alone
    common.start(['prog'], quiet=True)
    assert logging.get_verbosity() == logging.WARNING
  finally:
    logging.set_verbosity(before)


def test_ctrl_c_is_one_line_and_status_130(capsys):
  with pytest.raises(SystemExit) as info:
    with common.exit_on_error():
      raise KeyboardInterrupt
  assert info.value.code == 130
  assert capsys.readouterr().err.strip() == 'interrupted'


def test_file_system_errors_naming_a_file_are_one_line(tmp_path):
  if os.getuid() == 0:
    pytest.skip('root writes into read-only folders')
  folder = tmp_path / 'read_only'
  folder.mkdir()
  folder.chmod(0o500)
  with pytest.raises(SystemExit) as info:
    with common.exit_on_error():
      (folder / 'out.png').write_bytes(b'x')
  assert info.value.code == f'error: {folder / "out.png"}: Permission denied'


def test_os_errors_naming_a_file_are_one_line_and_others_keep_their_traceback(tmp_path):
  with pytest.raises(SystemExit) as info:
    with common.exit_on_error():
      raise OSError(28, 'No space left on device', str(tmp_path / 'big.mp4'))
  assert info.value.code == f'error: {tmp_path / "big.mp4"}: No space left on device'
  with pytest.raises(OSError):
    with common.exit_on_error():
      raise OSError('a bug with no file')


@pytest.mark.parametrize('args,line', [
    (['--config=configs/nope.py'], 'error: configs/nope.py: no such config file'),
    (['--config=configs/default.py', '--config.data.nope=1'],
     'error: --config.data.nope: no such config field in configs/default.py'),
    (['--config=configs/default.py:variant=huge'],
     "error: config.model.variant: unknown variant 'huge'; choose from "
     "['base', 'small', 'tiny']"),
    (['--config=configs/default.py', '--nope'], "error: Unknown command line flag 'nope'"),
])
def test_command_line_mistakes_are_one_line(repo, tmp_path, args, line):
  proc = subprocess.run([sys.executable, '-m', 'clarity_jax.main', f'--workdir={tmp_path}/w',
                         *args], cwd=repo, capture_output=True, text=True, timeout=300)
  assert proc.returncode == 1
  assert proc.stderr.strip().splitlines() == [line]
  assert not (tmp_path / 'w' / 'checkpoints').exists()
