"""Streaming frame readers for real footage: videos, frame folders, images.

Readers yield one float32 RGB frame [H, W, 3] in [0, 1] at a time (the project's
frame convention, see media/frames.py), so a two-hour video costs the memory of a
few frames. Everything a reader can check without decoding pixels (container,
codec, frame sizes in file headers) is checked when it is opened, before any
output exists; what only decoding reveals (a truncated stream) raises at the end,
and the writers then leave nothing behind.

The writers are writers.py.
"""

from __future__ import annotations

import dataclasses
import fractions
import os
from pathlib import Path
from typing import Iterator, Protocol

import av
import numpy as np

from clarity_jax import errors
from clarity_jax import files
from clarity_jax.media import frames

# Frame rate of a video made from a frame folder (which carries none).
DEFAULT_FPS = fractions.Fraction(25)


class MediaError(errors.PathError):
  """An input or output video, image or folder is unusable: '<path>: <what>'."""


class FrameReader(Protocol):
  """One clip: its frame size, length (None when the container does not say) and
  frames in order."""
  path: Path
  size: tuple[int, int]
  num_frames: int | None
  fps: fractions.Fraction | None

  def __iter__(self) -> Iterator[np.ndarray]:
    ...


class VideoReader:
  """Decodes the first video stream of a file with PyAV, one frame at a time."""

  def __init__(self, path: str | os.PathLike):
    self.path = Path(path)
    if not self.path.is_file():
      raise MediaError(self.path, 'no such file' if not self.path.exists() else 'not a file')
    if self.path.stat().st_size == 0:
      raise MediaError(self.path, 'empty file (0 bytes)')
    try:
      with av.open(str(self.path)) as container:
        if not container.streams.video:
          raise MediaError(self.path, 'no video stream')
        stream = container.streams.video[0]
        if stream.codec_context is None:
          raise MediaError(self.path, 'unknown video codec: FFmpeg has no decoder for it')
        self.codec = stream.codec_context.name
        self.size = (stream.codec_context.height, stream.codec_context.width)
        self.fps = stream.average_rate or stream.guessed_rate
        self.num_frames = _expected_frames(container, stream, self.fps)
        self._exact_count = bool(stream.frames)
        # Each frame's own time (variable-frame-rate footage keeps it on output).
        self.time_base = stream.time_base
        # The pixel format, so that 10-bit and 4:4:4 input stay so (writers.py).
        fmt = stream.codec_context.format
        self.pix_fmt = fmt.name if fmt is not None else None
        self.bit_depth = max((c.bits for c in fmt.components), default=8) if fmt else 8
    except av.error.FFmpegError as e:
      raise MediaError(self.path, f'not a readable video ({ffmpeg_reason(e)}); truncated '
                       'or not a video?') from e
    if min(self.size) <= 0:
      raise MediaError(self.path, f'video stream has no frame size ({self.codec})')

  def __iter__(self) -> Iterator[np.ndarray]:
    """Frames in order; `timestamps` grows with them (pts in `time_base`)."""
    count = 0
    h, w = self.size
    # More than 8 bits a sample are decoded to 16-bit RGB, so none are lost.
    rgb_format, peak = ('rgb48le', 65535.0) if self.bit_depth > 8 else ('rgb24', 255.0)
    self.timestamps: list[int | None] = []
    try:
      with av.open(str(self.path)) as container:
        stream = container.streams.video[0]
        stream.thread_type = 'AUTO'  # frame threads: decoding keeps up with restoring
        for frame in container.decode(stream):
          rgb = frame.to_ndarray(format=rgb_format)
          if rgb.shape[:2] != (h, w):
            raise MediaError(self.path, f'frame {count} is {rgb.shape[1]}x{rgb.shape[0]}, '
                             f'earlier frames are {w}x{h}')
          self.timestamps.append(frame.pts)
          yield rgb.astype(np.float32) / peak
          count += 1
    except av.error.FFmpegError as e:
      raise MediaError(self.path, f'cannot decode frame {count} ({ffmpeg_reason(e)}): '
                       'truncated or corrupt video') from e
    if count == 0:
      raise MediaError(self.path, 'no decodable video frames')
    if self.num_frames is not None and self._is_short(count):
      raise MediaError(self.path, f'truncated video: decoded {count} of the {self.num_frames} '
                       'frames its header announces')

  def _is_short(self, count: int) -> bool:
    if self._exact_count:  # mp4, mov, avi: the index lists every frame
      return count < self.num_frames
    # Matroska/WebM give only a duration: allow for its rounding.
    return count < 0.95 * self.num_frames - 2


def _expected_frames(container, stream, fps) -> int | None:
  if stream.frames:
    return int(stream.frames)
  if stream.duration is not None and stream.time_base is not None:
    seconds = float(stream.duration * stream.time_base)
  elif container.duration is not None:
    seconds = container.duration / av.time_base
  else:
    return None
  return int(round(seconds * float(fps))) if fps else None


def ffmpeg_reason(e: av.error.FFmpegError) -> str:
  return getattr(e, 'strerror', None) or e.__class__.__name__


class FrameSequenceReader:
  """The frames of one clip folder (or one image), read one by one.

  Sizes are compared in the file headers when the reader is made, so a folder of
  mixed sizes fails before anything is restored or written.
  """

  def __init__(self, name: str, paths: list[Path]):
    if not paths:
      raise frames.FrameError(name, 'clip has no frames')
    self.name = name
    self.paths = list(paths)
    self.path = self.paths[0].parent
    self.size = frames.check_clip_sizes(name, self.paths)
    self.num_frames = len(self.paths)
    self.fps = None
    self.names = [p.name for p in self.paths]

  def __iter__(self) -> Iterator[np.ndarray]:
    for path in self.paths:
      img = frames.read_image(path)
      if img.shape[:2] != self.size:  # the header said otherwise: a damaged file
        raise frames.FrameError(path, f'decoded size {img.shape[1]}x{img.shape[0]} differs '
                                f'from {self.size[1]}x{self.size[0]} of the clip')
      yield img


@dataclasses.dataclass
class MediaInput:
  """What an input path holds: kind is 'video', 'image', 'frames' (one clip
  folder) or 'clips' (a folder of clip folders); clips maps clip name -> reader."""
  path: Path
  kind: str
  clips: dict[str, FrameReader]

  @property
  def num_frames(self) -> int | None:
    counts = [r.num_frames for r in self.clips.values()]
    return None if any(c is None for c in counts) else sum(counts)


def list_videos(folder: str | os.PathLike) -> list[Path]:
  """The video files directly in `folder` (not hidden), in natural order; [] when it
  holds any frame or clip folder too (it is then a frame input, not a batch)."""
  folder = Path(folder)
  if not folder.is_dir():
    return []
  entries = [p for p in folder.iterdir() if not p.name.startswith('.')]
  videos = [p for p in entries if p.is_file() and p.suffix.lower() in files.VIDEO_EXTENSIONS]
  others = [p for p in entries if p.is_dir() or p.suffix.lower() in files.IMAGE_EXTENSIONS]
  return [] if others else sorted(videos, key=lambda p: frames.natural_key(p.name))


def open_input(path: str | os.PathLike) -> MediaInput:
  """Classifies and opens an input: a video file, an image, a frame folder, or a
  folder of clip folders (ROOT/<clip>/<frames>)."""
  path = Path(path)
  if not path.exists():
    raise MediaError(path, 'no such file or folder')
  if path.is_dir():
    clips = frames.list_clips(path)
    readers = {name: FrameSequenceReader(name, paths) for name, paths in clips.items()}
    single = frames.is_one_clip(clips, path)
    return MediaInput(path, 'frames' if single else 'clips', readers)
  suffix = path.suffix.lower()
  if suffix in files.VIDEO_EXTENSIONS:
    return MediaInput(path, 'video', {path.stem: VideoReader(path)})
  if suffix in files.IMAGE_EXTENSIONS:
    return MediaInput(path, 'image', {path.stem: FrameSequenceReader(path.stem, [path])})
  raise MediaError(path, f'unsupported input type {suffix or "(no extension)"!r}; expected '
                   f'a video ({", ".join(files.VIDEO_EXTENSIONS)}), an image '
                   f'({", ".join(files.IMAGE_EXTENSIONS)}) or a folder of frames')
