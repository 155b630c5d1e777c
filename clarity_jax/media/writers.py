"""Streaming writers for restored footage: frame folders and images (videos:
video_writer.py), and the marks and staging every writer shares.

Writers stream to a hidden temporary name beside the output and move it into
place only on close(): a crash, Ctrl-C or a decoding error never leaves a
half-written video or a half-filled frame folder under the requested name. Each
output carries a mark (OUTPUT_MARK), and --overwrite replaces nothing without it.
Given the job that makes the frames, videos and frame folders wait in a work
folder (`.NAME.partial/`) that an interrupted job leaves behind and the same job
resumes from.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from absl import logging

import av
import numpy as np
from PIL import Image
from PIL import PngImagePlugin

from clarity_jax import files
from clarity_jax.media import frames
from clarity_jax.media import readers

# What marks an output as this program's own, so that --overwrite replaces only
# those and never a file or folder the user made: a hidden file inside a frame
# folder, a container tag of a video, a text chunk or comment of an image.
OUTPUT_MARK = 'clarity_jax.enhance'
FOLDER_MARK_FILE = '.clarity_jax_enhance'


def is_marked_output(path: Path) -> bool:
  """Whether `path` is a complete output written by one of the writers below."""
  try:
    if path.is_dir():
      return (path / FOLDER_MARK_FILE).is_file()
    if path.suffix.lower() in files.VIDEO_EXTENSIONS:
      with av.open(str(path)) as container:
        tags = {k.lower(): v for k, v in container.metadata.items()}  # mkv: COMMENT
        return tags.get('comment') == OUTPUT_MARK
    if path.suffix.lower() in files.IMAGE_EXTENSIONS:
      with Image.open(path) as im:
        mark = im.info.get('comment', im.info.get('Comment', b''))
        return (mark.decode('utf-8', 'replace') if isinstance(mark, bytes) else mark
                ) == OUTPUT_MARK
  except (OSError, av.error.FFmpegError, ValueError):
    return False
  return False


JOB_FILE = 'job.json'


def work_folder(path: Path) -> Path:
  """Where the finished parts of `path` (video segments, frames) wait: hidden, beside it."""
  return path.with_name(f'.{path.name}.partial')


def open_work_folder(parts: Path, record: dict[str, Any]) -> bool:
  """Creates `parts` for the job `record`; True when it already held that job's
  parts (an interrupted run of the same command: keep them). Another job's parts
  are removed: they are an earlier output of this command, and stale.
  """
  text = json.dumps(record, sort_keys=True, default=str)
  job_file = parts / JOB_FILE
  if parts.exists():
    if not job_file.is_file():
      raise readers.MediaError(parts, 'exists and is not a clarity_jax.enhance work '
                                'folder; move it away')
    if job_file.read_text() == text:
      return True
    files.remove(parts)
  parts.mkdir(parents=True)
  files.write_bytes(job_file, text.encode())
  return False


class Staged:
  """A temporary sibling of `final` that replaces it on commit(), never before.

  An existing `final` is replaced only with `overwrite` and only when it is an
  earlier output of this program (is_marked_output): nothing else is deleted.
  `tmp`: the temporary to commit, when the caller keeps its own (a work folder).
  """

  def __init__(self, final: Path, overwrite: bool, tmp: Path | None = None):
    self.final = final
    if final.exists() and not overwrite:
      raise readers.MediaError(final, 'already exists; choose a new output or pass --overwrite')
    if final.exists() and not is_marked_output(final):
      raise readers.MediaError(final, 'exists and is not an earlier clarity_jax.enhance output; '
                       '--overwrite replaces only those: choose a new output')
    final.parent.mkdir(parents=True, exist_ok=True)
    # Not files.temp_sibling: the temporary keeps the extension, from which PyAV
    # picks the container and write_image the image format.
    files.remove_stale_siblings(final, final.stem, final.suffix)
    if tmp is not None:
      self.tmp = tmp
      return
    self.tmp = final.with_name(f'.{final.stem}.tmp-{os.getpid()}{final.suffix}')
    self.discard()

  def commit(self) -> None:
    if not self.final.exists():
      os.replace(self.tmp, self.final)
      return
    # --overwrite: the old output stays whole until the new one is in place.
    old = files.temp_sibling(self.final, 'old')
    os.replace(self.final, old)
    os.replace(self.tmp, self.final)
    files.remove(old)

  def discard(self) -> None:
    files.remove(self.tmp)


class Writer:
  """Context-manager plumbing: close() on success, abort() on any exception."""

  def __enter__(self):
    return self

  def __exit__(self, exc_type, exc, tb) -> None:
    if exc_type is None:
      self.close()
    else:
      self.abort()

  def close(self) -> None:
    raise NotImplementedError

  def abort(self) -> None:
    raise NotImplementedError


class FrameFolderWriter(Writer):
  """Writes frames under a folder by name ('clip/0001.png' makes the clip folder);
  the whole folder appears at once on close().

  With `job` (JSON-able: what makes the frames), the frames wait in a work folder
  that a stopped job (Ctrl-C, SIGTERM, SIGKILL, an unreadable input frame) leaves
  behind; the same job finds them again (`has`) and writes only the others. Each
  frame is written under a hidden name and renamed: a frame present is whole.
  """

  def __init__(self, folder: str | os.PathLike, *, overwrite: bool = False,
               job: Any = None):
    self.path = Path(folder)
    self.frames_written = 0
    if job is None:
      self._staged = Staged(self.path, overwrite)
      self._staged.tmp.mkdir(parents=True)
      self._resumable = False
      return
    parts = work_folder(self.path)
    self._staged = Staged(self.path, overwrite, tmp=parts)
    self._resumable = True
    if open_work_folder(parts, {'mark': OUTPUT_MARK, 'job': job}):
      _remove_hidden(parts)  # frames a killed run was writing
      kept = sum(1 for _ in _frames_in(parts))
      if kept:
        logging.warning('%s: resuming; %d restored frames kept in %s', self.path, kept,
                        parts)

  def has(self, name: str) -> bool:
    """Whether frame `name` was written whole, by this writer or a stopped run of its job."""
    return (self._staged.tmp / name).is_file()

  def write(self, frame: np.ndarray, name: str | None = None, pts: int | None = None) -> None:
    del pts  # frames and images carry no time
    if not name or Path(name).is_absolute() or '..' in Path(name).parts:
      raise readers.MediaError(self.path, f'bad frame name {name!r}')
    target = self._staged.tmp / name
    target.parent.mkdir(parents=True, exist_ok=True)
    # The hidden name keeps the extension, from which write_image picks the format.
    tmp = target.with_name(f'.{target.stem}.tmp{target.suffix}')
    frames.write_image(tmp, frame)
    os.replace(tmp, target)
    self.frames_written += 1

  def close(self) -> None:
    (self._staged.tmp / FOLDER_MARK_FILE).write_text(OUTPUT_MARK + '\n')
    if self._resumable:
      files.remove(self._staged.tmp / JOB_FILE)
    self._staged.commit()

  def abort(self) -> None:
    if not self._resumable:
      self._staged.discard()
      return
    parts = self._staged.tmp
    _remove_hidden(parts)
    kept = sum(1 for _ in _frames_in(parts))
    if kept:
      logging.warning('%s: stopped; %d restored frames are kept in %s: the same command '
                      'continues from there', self.path, kept, parts)
    else:
      files.remove(parts)


def _frames_in(parts: Path):
  return (p for p in parts.rglob('*') if p.is_file() and p.name != JOB_FILE
          and not p.name.startswith('.'))


def _remove_hidden(parts: Path) -> None:
  for path in list(parts.rglob('.*')):
    files.remove(path)


class ImageWriter(Writer):
  """Writes the one frame of a single-image input to an image file."""

  def __init__(self, path: str | os.PathLike, *, overwrite: bool = False):
    self.path = Path(path)
    if self.path.suffix.lower() not in files.IMAGE_EXTENSIONS:
      raise readers.MediaError(self.path, f'not an image file name; use one of '
                       f'{files.IMAGE_EXTENSIONS}')
    self._staged = Staged(self.path, overwrite)
    self.frames_written = 0

  def write(self, frame: np.ndarray, name: str | None = None, pts: int | None = None) -> None:
    del pts  # frames and images carry no time
    del name
    if self.frames_written:
      raise readers.MediaError(self.path, 'an image file holds one frame; write to a folder instead')
    # PIL, not frames.write_image (OpenCV): it writes the mark into the file.
    image = Image.fromarray(files.to_uint8(frame))
    if self.path.suffix.lower() == '.png':
      info = PngImagePlugin.PngInfo()
      info.add_text('comment', OUTPUT_MARK)
      image.save(self._staged.tmp, pnginfo=info)
    else:
      image.save(self._staged.tmp, quality=95, comment=OUTPUT_MARK.encode())
    self.frames_written = 1

  def close(self) -> None:
    if not self.frames_written:
      raise readers.MediaError(self.path, 'no frame was written')
    self._staged.commit()

  def abort(self) -> None:
    self._staged.discard()
