"""Frame and image writers (media/writers.py): what every writer stages and marks, so
a failure leaves nothing and --overwrite replaces only an earlier output (the video
writer included); the frame folder writer's names."""

import fractions
import os
import shutil

import numpy as np
import pytest

from clarity_jax.media import frames
from clarity_jax.media import readers
from clarity_jax.media import video_writer
from clarity_jax.media import writers

FPS = fractions.Fraction(30000, 1001)


def test_writers_leave_nothing_on_failure(tmp_path, leftovers):
  out = tmp_path / 'out.mp4'
  with pytest.raises(RuntimeError):
    with video_writer.VideoWriter(out, FPS) as writer:
      writer.write(np.zeros((16, 16, 3), np.uint8))
      raise RuntimeError('decoder failed half-way')
  folder = tmp_path / 'frames'
  with pytest.raises(RuntimeError):
    with writers.FrameFolderWriter(folder) as writer:
      writer.write(np.zeros((8, 8, 3), np.float32), 'a.png')
      raise RuntimeError('boom')
  assert not out.exists() and not folder.exists()
  assert leftovers(tmp_path) == []


def test_frame_folder_writer_keeps_names_and_refuses_existing_outputs(tmp_path, leftovers):
  folder = tmp_path / 'out'
  with writers.FrameFolderWriter(folder) as writer:
    writer.write(np.full((4, 6, 3), 0.5, np.float32), 'clip1/x_001.png')
    writer.write(np.zeros((4, 6, 3), np.float32), 'clip2/y.jpg')
    assert not folder.exists()
  assert sorted(str(p.relative_to(folder)) for p in folder.rglob('*.*')) == [
      writers.FOLDER_MARK_FILE, 'clip1/x_001.png', 'clip2/y.jpg']
  assert frames.read_image(folder / 'clip1/x_001.png')[0, 0, 0] == pytest.approx(128 / 255)
  with pytest.raises(readers.MediaError, match=rf'^{folder}: already exists'):
    writers.FrameFolderWriter(folder)
  with writers.FrameFolderWriter(folder, overwrite=True) as writer:
    writer.write(np.zeros((4, 6, 3), np.float32), 'z.png')
  assert sorted(os.listdir(folder)) == [writers.FOLDER_MARK_FILE, 'z.png']
  assert leftovers(tmp_path) == []


@pytest.mark.parametrize('name', ['out', 'out.mp4', 'out.png', 'out.jpg'])
def test_overwrite_replaces_only_earlier_outputs(tmp_path, name, leftovers):
  """A folder or file the user made is never deleted, --overwrite or not."""
  path = tmp_path / name
  if path.suffix:
    path.write_bytes(b'the user\'s own file')
  else:
    path.mkdir()
    (path / 'notes.txt').write_text('mine')
  before = sorted(p.name for p in tmp_path.rglob('*'))
  writer_type = {'': writers.FrameFolderWriter, '.mp4': None, '.png':
                 writers.ImageWriter, '.jpg': writers.ImageWriter}[path.suffix]
  make = ((lambda: video_writer.VideoWriter(path, FPS, overwrite=True))
          if writer_type is None else (lambda: writer_type(path, overwrite=True)))
  with pytest.raises(readers.MediaError) as e:
    make()
  assert str(e.value) == (f'{path}: exists and is not an earlier clarity_jax.enhance '
                          'output; --overwrite replaces only those: choose a new output')
  assert sorted(p.name for p in tmp_path.rglob('*')) == before
  # An earlier output of the writers is replaced.
  if path.suffix:
    path.unlink()
  else:
    shutil.rmtree(path)
  for value in (0.25, 0.75):
    with make() as writer:
      writer.write(np.full((8, 8, 3), value, np.float32), 'a.png')
    assert writers.is_marked_output(path)
  assert leftovers(tmp_path) == []
