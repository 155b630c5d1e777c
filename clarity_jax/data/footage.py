"""Real footage as a training source: video files, folders of videos and frame
folders, decoded once into a per-user cache of uint8 .npy memory maps.

(config.data.source = 'video' or 'footage'; the other sources: sources.py.)
"""

from __future__ import annotations

import hashlib
import os
import pathlib
from typing import Sequence

import cv2
import numpy as np
from absl import logging

from clarity_jax import files
from clarity_jax.media import frames
from clarity_jax.data import sources


class FootageSource(sources.ClipSource):
  """Real footage, mixed: video files, folders of videos and frame folders (one clip,
  or ROOT/<clip>/), each decoded once into uint8 .npy files in `cache_dir`.

  The cache is keyed by path, size, modification time and `downscale`, so re-runs
  reuse it; frames are read back as memory maps: windows cost a slice, not a
  decode, and RAM holds only the pages in use. No pickle. `downscale` > 1 area-
  downscales every frame first: 1280x720 H.264 frames averaged 2x2 lose most of
  the codec's noise and softness, and make sharper targets.
  """

  def __init__(self, paths: Sequence[str | os.PathLike], spec: sources.WindowSpec,
               cache_dir: str = '', downscale: int = 1):
    cache = pathlib.Path(cache_dir or files.user_cache_dir() / 'video')
    cache.mkdir(parents=True, exist_ok=True)
    names, where, self._clips = [], [], []
    for name, path, frame_paths in _footage_clips(paths):
      if frame_paths is None:
        clip = decode_video_cached(path, cache, downscale)
      else:
        clip = read_frames_cached(path, frame_paths, cache, downscale)
      names.append(name)
      where.append(str(path))
      self._clips.append(clip)
    super().__init__(spec, names, [len(a) for a in self._clips],
                     [a.shape[1:3] for a in self._clips], where)

  def _read(self, clip: int, indices: np.ndarray, y: int, x: int) -> np.ndarray:
    c = self.spec.crop
    # Fancy indexing on the memmap copies only the T crops out of the page cache.
    window = self._clips[clip][indices, y:y + c, x:x + c]
    return window.astype(np.float32) / 255.0


class VideoSource(FootageSource):
  """A folder of video files, one clip each (config.data.source='video')."""

  def __init__(self, root: str | os.PathLike, spec: sources.WindowSpec, cache_dir: str = '',
               downscale: int = 1):
    root = pathlib.Path(root)
    if not root.is_dir():
      raise sources.SourceError(root, 'no such directory')
    if not any(p.suffix.lower() in files.VIDEO_EXTENSIONS for p in root.iterdir()):
      raise sources.SourceError(root, f'no video files ({", ".join(files.VIDEO_EXTENSIONS)})')
    super().__init__([root], spec, cache_dir, downscale)


def _footage_clips(paths: Sequence[str | os.PathLike]
                   ) -> list[tuple[str, pathlib.Path, list[pathlib.Path] | None]]:
  """(name, path, frame paths or None for a video) of every clip the paths hold."""
  out = []
  for path in map(pathlib.Path, paths):
    if not path.exists():
      raise sources.SourceError(path, 'no such file or folder')
    if path.is_file():
      if path.suffix.lower() not in files.VIDEO_EXTENSIONS:
        raise sources.SourceError(path, f'not a video ({", ".join(files.VIDEO_EXTENSIONS)}) or a '
                          'folder')
      out.append((path.stem, path, None))
      continue
    videos = sorted(p for p in path.iterdir() if p.suffix.lower() in files.VIDEO_EXTENSIONS)
    if videos:
      others = sorted(p.name for p in path.iterdir()
                      if p.is_file() and p.suffix.lower() not in files.VIDEO_EXTENSIONS)
      if others:
        logging.warning('%s: ignoring %d files that are not videos (%s): %s', path,
                        len(others), ', '.join(files.VIDEO_EXTENSIONS), ', '.join(others[:5]))
      out.extend((v.stem, v, None) for v in videos)
      continue
    for name, frame_paths in frames.list_clips(path).items():
      frames.check_clip_sizes(name, frame_paths)
      out.append((name, frame_paths[0].parent, frame_paths))
  return out


def decode_video_cached(path: pathlib.Path, cache_dir: pathlib.Path, downscale: int = 1
                        ) -> np.ndarray:
  """All frames of a video as a read-only uint8 memmap [N, H, W, 3] (RGB)."""
  import av  # pylint: disable=g-import-not-at-top

  def decode():
    try:
      with av.open(str(path)) as container:
        if not container.streams.video:
          raise sources.SourceError(path, 'no video stream')
        stream = container.streams.video[0]
        stream.thread_type = 'AUTO'
        for frame in container.decode(stream):
          yield frame.to_ndarray(format='rgb24')
    except av.error.FFmpegError as e:
      raise sources.SourceError(path, f'cannot decode video ({e})') from e

  stat = path.stat()
  if stat.st_size == 0:
    raise sources.SourceError(path, 'empty file (0 bytes)')
  return _cached(path, f'{stat.st_size}|{stat.st_mtime_ns}', decode, cache_dir, downscale)


def read_frames_cached(folder: pathlib.Path, paths: Sequence[pathlib.Path],
                       cache_dir: pathlib.Path, downscale: int = 1) -> np.ndarray:
  """A clip folder's frames as a read-only uint8 memmap, like decode_video_cached."""
  stamp = '|'.join(f'{p.name}:{p.stat().st_size}:{p.stat().st_mtime_ns}' for p in paths)
  return _cached(folder, stamp, lambda: (files.to_uint8(frames.read_image(p)) for p in paths),
                 cache_dir, downscale)


def _cached(path: pathlib.Path, stamp: str, decode, cache_dir: pathlib.Path,
            downscale: int) -> np.ndarray:
  """The frames `decode()` yields (uint8 RGB), area-downscaled by `downscale`, as a
  read-only memmap of an .npy in `cache_dir` keyed by path, `stamp` and downscale.

  Decodes once: the .npy is streamed to a temporary name (frames are not all held in
  memory) and renamed into place (files.atomic_path), so an interrupted decode leaves
  nothing half-written. Files of another user are refused, never read.
  """
  key = hashlib.sha1(f'{path.resolve()}|{stamp}|{downscale}'.encode())
  suffix = f'-x{downscale}' if downscale > 1 else ''
  target = cache_dir / f'{path.stem}{suffix}-{key.hexdigest()[:16]}.npy'
  if target.exists():
    if not files.owned_by_me(target):
      raise sources.SourceError(target, 'cached frames of another user; remove the file or choose '
                        'another config.data.cache_dir')
    return np.load(target, mmap_mode='r', allow_pickle=False)
  with files.atomic_path(target) as tmp, open(tmp, 'wb') as out:
    count, shape = 0, None
    for rgb in decode():
      if downscale > 1:  # area: the average of each block, the sharpest honest target
        h, w = rgb.shape[:2]
        rgb = cv2.resize(rgb, (w // downscale, h // downscale), interpolation=cv2.INTER_AREA)
      if shape is None:
        shape = rgb.shape
        header_size = _write_npy_header(out, (0, *shape))
      elif rgb.shape != shape:
        raise sources.SourceError(path, f'frame {count} is {rgb.shape[1]}x{rgb.shape[0]}, '
                          f'earlier frames are {shape[1]}x{shape[0]}')
      out.write(np.ascontiguousarray(rgb).tobytes())
      count += 1
    if count == 0:
      raise sources.SourceError(path, 'no decodable video frames')
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
