"""Streaming frame readers and writers for real footage: videos, frame folders, images.

Readers yield one float32 RGB frame [H, W, 3] in [0, 1] at a time (the project's
frame convention, see data/frames.py), so a two-hour video costs the memory of a
few frames. Everything a reader can check without decoding pixels (container,
codec, frame sizes in file headers) is checked when it is opened, before any
output exists; what only decoding reveals (a truncated stream) raises at the end,
and the writers then leave nothing behind.

Writers stream to a hidden temporary name beside the output and move it into
place only on close(): a crash, Ctrl-C or a decoding error never leaves a
half-written video or a half-filled frame folder under the requested name.
"""

from __future__ import annotations

import dataclasses
import fractions
import os
from pathlib import Path
from typing import Iterator, Protocol

from absl import logging
import av
import numpy as np

from clarity_jax import errors
from clarity_jax import files
from clarity_jax.data import frames

# x264 quality for restored video: 18 is visually lossless for most content, so
# the codec does not undo what the restoration added; `preset` trades encoding
# speed for file size only, never quality.
DEFAULT_CRF = 18
DEFAULT_PRESET = 'medium'
X264_PRESETS = ('ultrafast', 'superfast', 'veryfast', 'faster', 'fast', 'medium', 'slow',
                'slower', 'veryslow')
# x264 holds rc-lookahead frames (40 at preset medium) before emitting one: at a
# 5120x2880 (x4 of 720p) output that alone is ~2 GB, growing over the first 40
# frames. 10 keeps the encoder's memory small and flat at a minor cost in size.
X264_LOOKAHEAD = 10
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
    except av.error.FFmpegError as e:
      raise MediaError(self.path, f'not a readable video ({_ffmpeg_reason(e)}); truncated '
                       'or not a video?') from e
    if min(self.size) <= 0:
      raise MediaError(self.path, f'video stream has no frame size ({self.codec})')

  def __iter__(self) -> Iterator[np.ndarray]:
    count = 0
    h, w = self.size
    try:
      with av.open(str(self.path)) as container:
        stream = container.streams.video[0]
        stream.thread_type = 'AUTO'  # frame threads: decoding keeps up with restoring
        for frame in container.decode(stream):
          rgb = frame.to_ndarray(format='rgb24')
          if rgb.shape[:2] != (h, w):
            raise MediaError(self.path, f'frame {count} is {rgb.shape[1]}x{rgb.shape[0]}, '
                             f'earlier frames are {w}x{h}')
          yield rgb.astype(np.float32) / 255.0
          count += 1
    except av.error.FFmpegError as e:
      raise MediaError(self.path, f'cannot decode frame {count} ({_ffmpeg_reason(e)}): '
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


def _ffmpeg_reason(e: av.error.FFmpegError) -> str:
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
class Source:
  """What an input path holds: kind is 'video', 'image', 'frames' (one clip
  folder) or 'clips' (a folder of clip folders); clips maps clip name -> reader."""
  path: Path
  kind: str
  clips: dict[str, FrameReader]

  @property
  def num_frames(self) -> int | None:
    counts = [r.num_frames for r in self.clips.values()]
    return None if any(c is None for c in counts) else sum(counts)


def open_source(path: str | os.PathLike) -> Source:
  """Classifies and opens an input: a video file, an image, a frame folder, or a
  folder of clip folders (ROOT/<clip>/<frames>)."""
  path = Path(path)
  if not path.exists():
    raise MediaError(path, 'no such file or folder')
  if path.is_dir():
    clips = frames.list_clips(path)
    readers = {name: FrameSequenceReader(name, paths) for name, paths in clips.items()}
    single = frames.is_one_clip(clips, path)
    return Source(path, 'frames' if single else 'clips', readers)
  suffix = path.suffix.lower()
  if suffix in files.VIDEO_EXTENSIONS:
    return Source(path, 'video', {path.stem: VideoReader(path)})
  if suffix in files.IMAGE_EXTENSIONS:
    return Source(path, 'image', {path.stem: FrameSequenceReader(path.stem, [path])})
  raise MediaError(path, f'unsupported input type {suffix or "(no extension)"!r}; expected '
                   f'a video ({", ".join(files.VIDEO_EXTENSIONS)}), an image '
                   f'({", ".join(files.IMAGE_EXTENSIONS)}) or a folder of frames')


# ---------------------------------------------------------------------- writers


class _Staged:
  """A temporary sibling of `final` that replaces it on commit(), never before."""

  def __init__(self, final: Path, overwrite: bool):
    self.final = final
    if final.exists() and not overwrite:
      raise MediaError(final, 'already exists; choose a new output or pass --overwrite')
    final.parent.mkdir(parents=True, exist_ok=True)
    # Not files.temp_sibling: the temporary keeps the extension, from which PyAV
    # picks the container and write_image the image format.
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


class _Writer:
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


class VideoWriter(_Writer):
  """Encodes frames into a video as they come: libx264, yuv420p, CRF quality.

  yuv420p (what every player decodes) needs even sizes: an odd height or width is
  padded by repeating the last row or column. The container follows the file
  extension (.mp4, .mkv, .mov, .avi).
  """

  def __init__(self, path: str | os.PathLike, fps: fractions.Fraction | float | None, *,
               crf: int = DEFAULT_CRF, preset: str = DEFAULT_PRESET, overwrite: bool = False):
    self.path = Path(path)
    if self.path.suffix.lower() not in files.VIDEO_EXTENSIONS:
      raise MediaError(self.path, 'not a video file name; use one of '
                       f'{files.VIDEO_EXTENSIONS}')
    self.fps = fractions.Fraction(fps or DEFAULT_FPS).limit_denominator(1001)
    self.crf, self.preset = int(crf), preset
    self._staged = _Staged(self.path, overwrite)
    self._container = None
    self._stream = None
    self.size = None
    self.frames_written = 0

  def _open(self, h: int, w: int) -> None:
    self.size = (h, w)
    if h % 2 or w % 2:
      logging.warning('%s: %dx%d padded to even %dx%d for yuv420p', self.path, w, h,
                      w + w % 2, h + h % 2)
    try:
      self._container = av.open(str(self._staged.tmp), 'w')
      self._stream = self._container.add_stream('libx264', rate=self.fps)
      self._stream.width, self._stream.height = w + w % 2, h + h % 2
      self._stream.pix_fmt = 'yuv420p'
      self._stream.options = {'crf': str(self.crf), 'preset': self.preset,
                              'rc-lookahead': str(X264_LOOKAHEAD)}
    except av.error.FFmpegError as e:
      self.abort()
      raise MediaError(self.path, f'cannot create video ({_ffmpeg_reason(e)})') from e

  def write(self, frame: np.ndarray, name: str | None = None) -> None:
    del name  # a video has no per-frame names
    frame = files.to_uint8(frame)
    h, w = frame.shape[:2]
    if self._container is None:
      self._open(h, w)
    elif (h, w) != self.size:
      raise MediaError(self.path, f'frame {self.frames_written} is {w}x{h}, earlier frames '
                       f'are {self.size[1]}x{self.size[0]}')
    if h % 2 or w % 2:
      frame = np.pad(frame, ((0, h % 2), (0, w % 2), (0, 0)), mode='edge')
    self._mux(av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format='rgb24'))
    self.frames_written += 1

  def _mux(self, frame: av.VideoFrame | None) -> None:
    try:
      for packet in self._stream.encode(frame):
        self._container.mux(packet)
    except av.error.FFmpegError as e:
      raise MediaError(self.path, f'encoding failed ({_ffmpeg_reason(e)})') from e

  def close(self) -> None:
    if self._container is None:
      self.abort()
      raise MediaError(self.path, 'no frames were written')
    self._mux(None)  # flush the encoder's delayed frames
    self._container.close()
    self._container = None
    self._staged.commit()

  def abort(self) -> None:
    if self._container is not None:
      try:
        self._container.close()
      except av.error.FFmpegError:
        pass
      self._container = None
    self._staged.discard()


class FrameFolderWriter(_Writer):
  """Writes frames under a folder by name ('clip/0001.png' makes the clip folder);
  the whole folder appears at once on close()."""

  def __init__(self, folder: str | os.PathLike, *, overwrite: bool = False):
    self.path = Path(folder)
    self._staged = _Staged(self.path, overwrite)
    self._staged.tmp.mkdir(parents=True)
    self.frames_written = 0

  def write(self, frame: np.ndarray, name: str | None = None) -> None:
    if not name or Path(name).is_absolute() or '..' in Path(name).parts:
      raise MediaError(self.path, f'bad frame name {name!r}')
    target = self._staged.tmp / name
    target.parent.mkdir(parents=True, exist_ok=True)
    frames.write_image(target, frame)
    self.frames_written += 1

  def close(self) -> None:
    self._staged.commit()

  def abort(self) -> None:
    self._staged.discard()


class ImageWriter(_Writer):
  """Writes the one frame of a single-image input to an image file."""

  def __init__(self, path: str | os.PathLike, *, overwrite: bool = False):
    self.path = Path(path)
    if self.path.suffix.lower() not in files.IMAGE_EXTENSIONS:
      raise MediaError(self.path, f'not an image file name; use one of '
                       f'{files.IMAGE_EXTENSIONS}')
    self._staged = _Staged(self.path, overwrite)
    self.frames_written = 0

  def write(self, frame: np.ndarray, name: str | None = None) -> None:
    del name
    if self.frames_written:
      raise MediaError(self.path, 'an image file holds one frame; write to a folder instead')
    frames.write_image(self._staged.tmp, frame)
    self.frames_written = 1

  def close(self) -> None:
    if not self.frames_written:
      raise MediaError(self.path, 'no frame was written')
    self._staged.commit()

  def abort(self) -> None:
    self._staged.discard()
