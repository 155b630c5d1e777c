"""What every reader and writer of footage shares: the file kinds, 8-bit pixels,
and writes that never leave a half-written file under its final name.
"""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import Iterator
import importlib.metadata
import os
from pathlib import Path
import shutil

import numpy as np

IMAGE_EXTENSIONS = ('.png', '.jpg', '.jpeg', '.bmp', '.tif', '.tiff', '.webp')
# Containers PyAV (FFmpeg) reads and writes; lower case, with the dot.
VIDEO_EXTENSIONS = ('.mp4', '.avi', '.mkv', '.mov', '.m4v', '.webm')


def package_version() -> str:
  """The installed clarity_jax version, recorded in every output's sidecar."""
  try:
    return importlib.metadata.version('clarity_jax')
  except importlib.metadata.PackageNotFoundError:
    return 'unknown'


def user_cache_dir() -> Path:
  """This user's cache folder for clarity_jax ($XDG_CACHE_HOME or ~/.cache).

  Per user, not the shared system temp folder: nobody else can plant or swap a
  file that a later run would read as its own (see owned_by_me)."""
  base = os.environ.get('XDG_CACHE_HOME') or os.path.join(os.path.expanduser('~'), '.cache')
  return Path(base, 'clarity_jax')


def owned_by_me(path: str | os.PathLike) -> bool:
  """Whether this user owns `path`: a cache refuses files it did not write."""
  return not hasattr(os, 'getuid') or os.stat(path).st_uid == os.getuid()


def sha256_file(path: str | os.PathLike) -> str:
  """The hex sha256 of a file, read in 1 MiB chunks."""
  digest = hashlib.sha256()
  with open(path, 'rb') as f:
    for chunk in iter(lambda: f.read(1 << 20), b''):
      digest.update(chunk)
  return digest.hexdigest()


def to_uint8(frame: np.ndarray) -> np.ndarray:
  """float [0, 1] (NaN to 0, clipped, rounded half up) or uint8 -> uint8.

  In place on one float32 copy: at 4K each temporary would be 100 MB.
  """
  frame = np.asarray(frame)
  if frame.dtype == np.uint8:
    return frame
  x = np.nan_to_num(frame.astype(np.float32, copy=True), copy=False)
  np.clip(x, 0.0, 1.0, out=x)
  x *= 255.0
  x += 0.5
  return x.astype(np.uint8)


def to_uint16(frame: np.ndarray) -> np.ndarray:
  """float [0, 1] -> uint16 (NaN to 0, clipped, rounded half up): 10-bit video out."""
  x = np.nan_to_num(np.asarray(frame, np.float32).copy(), copy=False)
  np.clip(x, 0.0, 1.0, out=x)
  x *= 65535.0
  x += 0.5
  return x.astype(np.uint16)


def temp_sibling(path: Path, tag: str = 'tmp') -> Path:
  """A hidden name beside `path`, unique to this process: same folder, so that
  os.replace onto `path` is an atomic rename.

  Temporaries of `path` left by processes that no longer run (killed before they
  could clean up) are removed first: no later run leaves them to accumulate.
  """
  remove_stale_siblings(path)
  return path.with_name(f'.{path.name}.{tag}-{os.getpid()}')


def remove_stale_siblings(path: Path, stem: str | None = None, suffix: str = '') -> None:
  """Removes `.{name}.{tag}-{pid}{suffix}` beside `path` (name: `stem`, default the
  file name) whose process is gone."""
  prefix = f'.{path.name if stem is None else stem}.'
  try:
    siblings = [p for p in path.parent.iterdir()
                if p.name.startswith(prefix) and p.name.endswith(suffix)]
  except OSError:  # no parent folder yet, or not listable: nothing of ours there
    return
  for sibling in siblings:
    middle = sibling.name[len(prefix):len(sibling.name) - len(suffix)]
    tag, _, pid = middle.rpartition('-')
    if not (tag.isidentifier() and pid.isdigit()) or int(pid) == os.getpid():
      continue
    try:
      os.kill(int(pid), 0)
    except ProcessLookupError:
      if owned_by_me(sibling):
        remove(sibling)
    except PermissionError:  # another user's live process
      pass


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
  """Yields a temporary sibling of `path` to write; on success it replaces `path`
  in one rename, on any error it is removed and `path` is left as it was."""
  path = Path(path)
  tmp = temp_sibling(path)
  try:
    yield tmp
    os.replace(tmp, path)
  except BaseException:
    remove(tmp)
    raise


def write_text(path: str | os.PathLike, text: str) -> None:
  """Writes a text file atomically (see atomic_path)."""
  with atomic_path(path) as tmp:
    tmp.write_text(text)


def write_bytes(path: str | os.PathLike, data: bytes) -> None:
  """Writes a binary file atomically (see atomic_path)."""
  with atomic_path(path) as tmp:
    tmp.write_bytes(data)


def replace_folder(tmp: Path, final: Path) -> None:
  """Renames a finished folder to its final name, replacing an earlier one.

  The old folder is renamed aside before the new one moves in, so at every moment
  `final` is either the complete old folder or the complete new one.
  """
  if final.exists() and any(final.iterdir()):
    old = temp_sibling(final, 'old')
    os.replace(final, old)
    os.replace(tmp, final)
    remove(old)
  else:  # rename(2) replaces an empty folder
    os.replace(tmp, final)


def remove(path: Path) -> None:
  """Removes a file, link or folder tree if it exists."""
  if path.is_dir() and not path.is_symlink():
    shutil.rmtree(path)
  elif path.exists() or path.is_symlink():
    path.unlink()
