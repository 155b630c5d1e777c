"""Real footage, the one source of real training clips (config.data.source='footage'):
video files, folders of videos and frame folders (ROOT/<clip>/<frames>, or one clip
folder), comma separated in config.data.path, decoded once into a per-user cache of
uint8 .npy memory maps. The tfds builder lists and decodes clips with this module too.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import pathlib
from typing import Iterator, Sequence

import cv2
import numpy as np
from absl import logging

from clarity_jax import files
from clarity_jax.data import source_base
from clarity_jax.media import frames
from clarity_jax.media import readers


@dataclasses.dataclass(frozen=True)
class Clip:
  """One clip of real footage: a video file, or the frames of one folder by name."""
  name: str
  path: pathlib.Path  # the video file, or the folder of the frames
  frame_paths: list[pathlib.Path] | None = None  # None: a video file

  def stamp(self) -> str:
    """Sizes and modification times of the clip's files (the cache key's part)."""
    if self.frame_paths is None:
      stat = self.path.stat()
      return f'{stat.st_size}|{stat.st_mtime_ns}'
    return '|'.join(f'{p.name}:{p.stat().st_size}:{p.stat().st_mtime_ns}'
                    for p in self.frame_paths)

  def decode(self) -> Iterator[np.ndarray]:
    """The clip's frames in order, uint8 RGB [H, W, 3], read by media's readers (8 bits
    a sample: the cache's)."""
    reader = (readers.VideoReader(self.path) if self.frame_paths is None
              else map(frames.read_image, self.frame_paths))
    yield from (files.to_uint8(frame) for frame in reader)


def list_footage(paths: Sequence[str | os.PathLike]) -> list[Clip]:
  """Every clip the paths hold: a video file is one; a folder holding videos, one per
  video; any other folder, its frame clips (frames.list_clips, sizes checked)."""
  out = []
  for path in map(pathlib.Path, paths):
    if not path.exists():
      raise source_base.ClipError(path, 'no such file or folder')
    if path.is_file():
      if path.suffix.lower() not in files.VIDEO_EXTENSIONS:
        raise source_base.ClipError(
            path, f'not a video ({", ".join(files.VIDEO_EXTENSIONS)}) or a folder')
      out.append(Clip(path.stem, path))
      continue
    videos = sorted(p for p in path.iterdir() if p.suffix.lower() in files.VIDEO_EXTENSIONS)
    if videos:
      others = sorted(p.name for p in path.iterdir()
                      if p.is_file() and p.suffix.lower() not in files.VIDEO_EXTENSIONS)
      if others:
        logging.warning('%s: ignoring %d files that are not videos (%s): %s', path,
                        len(others), ', '.join(files.VIDEO_EXTENSIONS), ', '.join(others[:5]))
      out.extend(Clip(v.stem, v) for v in videos)
      continue
    for name, frame_paths in frames.list_clips(path).items():
      frames.check_clip_sizes(name, frame_paths)
      out.append(Clip(name, frame_paths[0].parent, frame_paths))
  for clip in out:
    if clip.frame_paths is None and clip.path.stat().st_size == 0:
      raise source_base.ClipError(clip.path, 'empty file (0 bytes)')
  return out


class FootageSource(source_base.ClipSource):
  """The clips of `paths` (list_footage), each decoded once into uint8 .npy files in
  `cache_dir` (empty: the user's cache folder, never beside the footage).

  The cache is keyed by path, size, modification time and `downscale`, so re-runs
  reuse it; frames are read back as memory maps: windows cost a slice, not a
  decode, and RAM holds only the pages in use. No pickle. `downscale` > 1 area-
  downscales every frame first: 1280x720 H.264 frames averaged 2x2 lose most of
  the codec's noise and softness, and make sharper targets.
  """

  def __init__(self, paths: Sequence[str | os.PathLike], spec: source_base.WindowSpec,
               cache_dir: str | os.PathLike = '', downscale: int = 1):
    cache = pathlib.Path(cache_dir or files.user_cache_dir() / 'video')
    cache.mkdir(parents=True, exist_ok=True)
    clips = list_footage(paths)
    self._clips = [_cached(clip, cache, downscale) for clip in clips]
    super().__init__(spec, [c.name for c in clips], [len(a) for a in self._clips],
                     [a.shape[1:3] for a in self._clips], [str(c.path) for c in clips])

  def _read(self, clip: int, indices: np.ndarray, y: int, x: int) -> np.ndarray:
    c = self.spec.crop
    # Fancy indexing on the memmap copies only the T crops out of the page cache.
    window = self._clips[clip][indices, y:y + c, x:x + c]
    return window.astype(np.float32) / 255.0


def _cached(clip: Clip, cache_dir: pathlib.Path, downscale: int) -> np.ndarray:
  """The clip's frames (uint8 RGB), area-downscaled by `downscale`, as a read-only
  memmap [N, H, W, 3] of an .npy in `cache_dir` keyed by path, stamp and downscale.

  Decodes once: the .npy is streamed to a temporary name (frames are not all held in
  memory) and renamed into place (files.atomic_path), so an interrupted decode leaves
  nothing half-written. Files of another user are refused, never read.
  """
  path = clip.path
  key = hashlib.sha1(f'{path.resolve()}|{clip.stamp()}|{downscale}'.encode())
  suffix = f'-x{downscale}' if downscale > 1 else ''
  target = cache_dir / f'{path.stem}{suffix}-{key.hexdigest()[:16]}.npy'
  if target.exists():
    if not files.owned_by_me(target):
      raise source_base.ClipError(target, 'cached frames of another user; remove the file '
                                    'or choose another config.data.cache_dir')
    return np.load(target, mmap_mode='r', allow_pickle=False)
  with files.atomic_path(target) as tmp, open(tmp, 'wb') as out:
    count, shape = 0, None
    for rgb in clip.decode():
      if downscale > 1:  # area: the average of each block, the sharpest honest target
        h, w = rgb.shape[:2]
        rgb = cv2.resize(rgb, (w // downscale, h // downscale), interpolation=cv2.INTER_AREA)
      if shape is None:
        shape = rgb.shape
        header_size = _write_npy_header(out, (0, *shape))
      elif rgb.shape != shape:
        raise source_base.ClipError(path, f'frame {count} is {rgb.shape[1]}x{rgb.shape[0]}, '
                                      f'earlier frames are {shape[1]}x{shape[0]}')
      out.write(np.ascontiguousarray(rgb).tobytes())
      count += 1
    if count == 0:
      raise source_base.ClipError(path, 'no decodable video frames')
    # NumPy pads .npy headers so axis 0 can grow in place: rewrite it with the count.
    out.seek(0)
    _write_npy_header(out, (count, *shape), header_size)
  return np.load(target, mmap_mode='r', allow_pickle=False)


def _write_npy_header(f, shape: tuple[int, ...], size: int | None = None) -> int:
  """Writes a uint8 .npy header at the file position; returns its size in bytes.

  With `size`, the header must have that size (it overwrites an earlier one in place).
  """
  header = {'descr': np.lib.format.dtype_to_descr(np.dtype(np.uint8)),
            'fortran_order': False, 'shape': shape}
  start = f.tell()
  np.lib.format.write_array_header_1_0(f, header)
  written = f.tell() - start
  if size is not None and written != size:
    raise RuntimeError(f'.npy header grew from {size} to {written} bytes for shape {shape}')
  return written
