"""cli_errors.exit_on_error: expected errors end a command with one line, bugs do not."""

import pytest

from clarity_jax.inference import bundle
from clarity_jax.cli import common as cli_errors
from clarity_jax.tools import degrade
from clarity_jax.inference import enhance
from clarity_jax.evaluation import evaluate
from clarity_jax.train import checkpoints
from clarity_jax.models import vgg
from clarity_jax.data import video_io
from clarity_jax.data import frames
from clarity_jax.data import sources


@pytest.mark.parametrize('error', [
    frames.FrameError, bundle.BundleError, evaluate.EvaluateError, enhance.EnhanceError,
    checkpoints.CheckpointError, video_io.MediaError, sources.SourceError, vgg.WeightsFileError,
    degrade.OutputError])
def test_every_file_error_is_a_path_error_and_exits_with_its_line(error, tmp_path):
  @cli_errors.exit_on_error()
  def main():
    raise error(tmp_path / 'clip.mp4', 'broken')

  with pytest.raises(SystemExit) as info:
    main()
  assert info.value.code == f'error: {tmp_path / "clip.mp4"}: broken'  # stderr, status 1


def test_extra_errors_exit_and_others_keep_their_traceback():
  with pytest.raises(SystemExit) as info:
    with cli_errors.exit_on_error(RuntimeError):
      raise RuntimeError('train failed with exit status 2')
  assert info.value.code == 'error: train failed with exit status 2'
  with pytest.raises(KeyError):
    with cli_errors.exit_on_error(RuntimeError):
      raise KeyError('a bug')


def test_start_refuses_stray_arguments_and_quiets_info_logs():
  from absl import app, logging  # pylint: disable=g-import-not-at-top
  with pytest.raises(app.UsageError, match=r"unexpected arguments: \['extra'\]"):
    cli_errors.start(['prog', 'extra'])
  before = logging.get_verbosity()
  try:
    logging.set_verbosity(logging.INFO)
    cli_errors.start(['prog'])
    assert logging.get_verbosity() == logging.INFO  # not quiet: left alone
    cli_errors.start(['prog'], quiet=True)
    assert logging.get_verbosity() == logging.WARNING
  finally:
    logging.set_verbosity(before)
