"""files.py: the one float -> uint8, and writes that are whole or absent."""

import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from clarity_jax import files


def test_to_uint8_rounds_clips_and_zeroes_nan():
  x = np.array([-0.5, 0.0, 0.5 / 255, 0.4 / 255, 254.5 / 255, 1.0, 3.0, np.nan], np.float32)
  np.testing.assert_array_equal(files.to_uint8(x), [0, 0, 1, 0, 255, 255, 255, 0])
  frame = np.random.default_rng(0).random((5, 7, 3), np.float32)
  # PIL's own conversion of the same rounded values agrees.
  expected = np.asarray(Image.fromarray(np.floor(frame * 255 + 0.5).astype(np.uint8)))
  np.testing.assert_array_equal(files.to_uint8(frame), expected)
  u8 = expected.copy()
  assert files.to_uint8(u8) is u8  # uint8 passes through untouched
  files.to_uint8(frame)
  assert frame.dtype == np.float32 and frame.max() <= 1  # the input is not modified


def test_atomic_path_replaces_whole_or_not_at_all(tmp_path):
  target = tmp_path / 'metrics.json'
  files.write_text(target, 'old')
  with pytest.raises(RuntimeError):
    with files.atomic_path(target) as tmp:
      tmp.write_text('half')
      raise RuntimeError('crash mid-write')
  assert target.read_text() == 'old'
  assert sorted(os.listdir(tmp_path)) == ['metrics.json']  # no temporary left
  files.write_bytes(target, b'new')
  assert target.read_bytes() == b'new' and sorted(os.listdir(tmp_path)) == ['metrics.json']


def test_replace_folder_swaps_a_finished_folder_in(tmp_path):
  final, tmp = tmp_path / 'out', tmp_path / '.out.tmp'
  final.mkdir()
  (final / 'a.png').write_text('old')
  tmp.mkdir()
  (tmp / 'b.png').write_text('new')
  files.replace_folder(tmp, final)
  assert sorted(os.listdir(final)) == ['b.png'] and sorted(os.listdir(tmp_path)) == ['out']
  tmp.mkdir()
  (tmp / 'c.png').write_text('x')
  (final / 'b.png').unlink()  # an empty final folder is simply replaced
  files.replace_folder(tmp, final)
  assert sorted(os.listdir(final)) == ['c.png']


def test_extensions_are_lower_case_with_dot():
  for ext in (*files.IMAGE_EXTENSIONS, *files.VIDEO_EXTENSIONS):
    assert ext.startswith('.') and ext == ext.lower()
  assert '.m4v' in files.VIDEO_EXTENSIONS and not set(files.IMAGE_EXTENSIONS) & set(
      files.VIDEO_EXTENSIONS)


def test_temporaries_of_dead_processes_are_removed(tmp_path):
  """A run killed before its cleanup leaves `.name.tmp-PID`; the next run removes it
  (its process is gone), never one of a live process or another name's."""
  dead = subprocess.run([sys.executable, '-c', 'import os; print(os.getpid())'],
                        capture_output=True, text=True, check=True).stdout.strip()
  final = tmp_path / 'out'
  stale = tmp_path / f'.out.tmp-{dead}'
  stale.mkdir()
  (stale / 'half.png').write_bytes(b'x')
  live = tmp_path / f'.out.old-{os.getppid()}'
  live.write_bytes(b'y')
  other = tmp_path / f'.other.tmp-{dead}'
  other.write_bytes(b'z')
  video_tmp = tmp_path / f'.clip.tmp-{dead}.mp4'
  video_tmp.write_bytes(b'v')
  tmp = files.temp_sibling(final)
  assert tmp.name == f'.out.tmp-{os.getpid()}'
  assert not stale.exists() and live.exists() and other.exists()
  files.remove_stale_siblings(tmp_path / 'clip.mp4', 'clip', '.mp4')
  assert not video_tmp.exists()
