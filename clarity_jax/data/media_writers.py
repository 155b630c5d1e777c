"""Streaming writers for restored footage: videos, frame folders, images.

Writers stream to a hidden temporary name beside the output and move it into
place only on close(): a crash, Ctrl-C or a decoding error never leaves a
half-written video or a half-filled frame folder under the requested name. Each
output carries a mark (OUTPUT_MARK), and --overwrite replaces nothing without it.
"""

from __future__ import annotations

import fractions
import os
from pathlib import Path

from absl import logging
import av
import numpy as np
from PIL import Image
from PIL import PngImagePlugin

from clarity_jax import files
from clarity_jax.data import frames
from clarity_jax.data import passthrough as passthrough_lib
from clarity_jax.data import video_io

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
# Containers of the written H.264 (.webm, readable, holds only VP8/VP9/AV1): the
# name is checked before a single frame is restored, not when the first is muxed.
H264_CONTAINERS = ('.mp4', '.mkv', '.mov', '.m4v', '.avi')


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
        return container.metadata.get('comment') == OUTPUT_MARK
    if path.suffix.lower() in files.IMAGE_EXTENSIONS:
      with Image.open(path) as im:
        mark = im.info.get('comment', im.info.get('Comment', b''))
        return (mark.decode('utf-8', 'replace') if isinstance(mark, bytes) else mark
                ) == OUTPUT_MARK
  except (OSError, av.error.FFmpegError, ValueError):
    return False
  return False


class _Staged:
  """A temporary sibling of `final` that replaces it on commit(), never before.

  An existing `final` is replaced only with `overwrite` and only when it is an
  earlier output of this program (is_marked_output): nothing else is deleted.
  """

  def __init__(self, final: Path, overwrite: bool):
    self.final = final
    if final.exists() and not overwrite:
      raise video_io.MediaError(final, 'already exists; choose a new output or pass --overwrite')
    if final.exists() and not is_marked_output(final):
      raise video_io.MediaError(final, 'exists and is not an earlier clarity_jax.enhance output; '
                       '--overwrite replaces only those: choose a new output')
    final.parent.mkdir(parents=True, exist_ok=True)
    # Not files.temp_sibling: the temporary keeps the extension, from which PyAV
    # picks the container and write_image the image format.
    files.remove_stale_siblings(final, final.stem, final.suffix)
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


def output_pix_fmt(input_pix_fmt: str | None, path: Path | None = None) -> str:
  """The libx264 pixel format nearest an input's: its chroma sampling (4:2:0,
  4:2:2, 4:4:4; RGB input counts as 4:4:4) and 8 or 10 bits."""
  if not input_pix_fmt:
    return 'yuv420p'
  fmt = av.VideoFormat(input_pix_fmt)
  bits = max((c.bits for c in fmt.components), default=8)
  name = fmt.name
  chroma = ('444' if fmt.is_rgb or name.startswith(('yuv444', 'yuvj444', 'gbr')) else
            '422' if name.startswith(('yuv422', 'yuvj422')) else '420')
  out = f'yuv{chroma}p' + ('10le' if bits > 8 else '')
  if bits > 10:
    logging.warning('%s: %d-bit input written as 10-bit (the most H.264 here holds)',
                    path or input_pix_fmt, bits)
  return out


class VideoWriter(_Writer):
  """Encodes frames into a video as they come: libx264 at CRF quality.

  The pixel format follows the input (output_pix_fmt; yuv420p, what every player
  decodes, by default); yuv420p and 4:2:2 need even sizes: an odd height or width
  is padded by repeating the last row or column. Frames carry the input's
  timestamps when given (variable frame rate stays variable), and `passthrough`
  copies the input's audio and subtitles in sync. The container follows the file
  extension (.mp4, .mkv, .mov, .avi).
  """

  def __init__(self, path: str | os.PathLike, fps: fractions.Fraction | float | None, *,
               crf: int = DEFAULT_CRF, preset: str = DEFAULT_PRESET, overwrite: bool = False,
               pix_fmt: str = 'yuv420p', time_base: fractions.Fraction | None = None,
               passthrough: passthrough_lib.Passthrough | None = None):
    self.path = Path(path)
    suffix = self.path.suffix.lower()
    if suffix not in H264_CONTAINERS:
      raise video_io.MediaError(self.path, (
          f'{suffix} cannot hold the H.264 video written' if suffix in files.VIDEO_EXTENSIONS
          else 'not a video file name') + f'; use one of {", ".join(H264_CONTAINERS)}')
    self.fps = fractions.Fraction(fps or video_io.DEFAULT_FPS).limit_denominator(1001)
    self.crf, self.preset = int(crf), preset
    self.pix_fmt, self.time_base, self.passthrough = pix_fmt, time_base, passthrough
    self._staged = _Staged(self.path, overwrite)
    self._container = None
    self._stream = None
    self.size = None
    self.frames_written = 0
    self._times: list[fractions.Fraction] = []  # of the last two frames written
    self._audio_end: fractions.Fraction | None = None

  def _open(self, h: int, w: int) -> None:
    self.size = (h, w)
    self._pad = (0, 0) if self.pix_fmt.startswith('yuv444') else (h % 2, w % 2)
    if any(self._pad):
      logging.warning('%s: %dx%d padded to even %dx%d for %s', self.path, w, h,
                      w + self._pad[1], h + self._pad[0], self.pix_fmt)
    try:
      self._container = av.open(str(self._staged.tmp), 'w')
      self._container.metadata['comment'] = OUTPUT_MARK
      self._stream = self._container.add_stream('libx264', rate=self.fps)
      self._stream.width, self._stream.height = w + self._pad[1], h + self._pad[0]
      self._stream.pix_fmt = self.pix_fmt
      if self.time_base is not None:
        self._stream.codec_context.time_base = self.time_base
        self._stream.time_base = self.time_base
      self._stream.options = {'crf': str(self.crf), 'preset': self.preset,
                              'rc-lookahead': str(X264_LOOKAHEAD)}
      if self.passthrough is not None:
        self.passthrough.add_streams(self._container)
    except av.error.FFmpegError as e:
      self.abort()
      raise video_io.MediaError(self.path, f'cannot create video ({video_io.ffmpeg_reason(e)})') from e

  def write(self, frame: np.ndarray, name: str | None = None, pts: int | None = None) -> None:
    """Encodes one frame; `pts` (in `time_base`) is its time, else frames_written / fps."""
    del name  # a video has no per-frame names
    deep = self.pix_fmt.endswith('10le')
    frame = files.to_uint16(frame) if deep else files.to_uint8(frame)
    h, w = frame.shape[:2]
    if self._container is None:
      self._open(h, w)
    elif (h, w) != self.size:
      raise video_io.MediaError(self.path, f'frame {self.frames_written} is {w}x{h}, earlier frames '
                       f'are {self.size[1]}x{self.size[0]}')
    if any(self._pad):
      frame = np.pad(frame, ((0, self._pad[0]), (0, self._pad[1]), (0, 0)), mode='edge')
    out = av.VideoFrame.from_ndarray(np.ascontiguousarray(frame),
                                     format='rgb48le' if deep else 'rgb24')
    if pts is not None and self.time_base is not None:
      out.pts, out.time_base = pts, self.time_base
      time = pts * self.time_base
    else:
      time = fractions.Fraction(self.frames_written) / self.fps
    self._mux(out)
    self._times = [*self._times[-1:], time]
    if self.passthrough is not None:
      self.passthrough.mux_until(self._container, time)
    self.frames_written += 1

  def end_audio_with_video(self) -> None:
    """Cuts the passed-through streams where the last frame written ends (for
    outputs that stop early, as with --max_frames)."""
    if self._times:
      step = (self._times[-1] - self._times[0]) if len(self._times) > 1 else 1 / self.fps
      self._audio_end = self._times[-1] + step

  def _mux(self, frame: av.VideoFrame | None) -> None:
    try:
      for packet in self._stream.encode(frame):
        self._container.mux(packet)
    except av.error.FFmpegError as e:
      raise video_io.MediaError(self.path, f'encoding failed ({video_io.ffmpeg_reason(e)})') from e

  def close(self) -> None:
    if self._container is None:
      self.abort()
      raise video_io.MediaError(self.path, 'no frames were written')
    self._mux(None)  # flush the encoder's delayed frames
    if self.passthrough is not None:
      self.passthrough.finish(self._container, self._audio_end)
    self._container.close()
    self._container = None
    self._staged.commit()

  def abort(self) -> None:
    if self.passthrough is not None:
      self.passthrough.close()
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

  def write(self, frame: np.ndarray, name: str | None = None, pts: int | None = None) -> None:
    del pts  # frames and images carry no time
    if not name or Path(name).is_absolute() or '..' in Path(name).parts:
      raise video_io.MediaError(self.path, f'bad frame name {name!r}')
    target = self._staged.tmp / name
    target.parent.mkdir(parents=True, exist_ok=True)
    frames.write_image(target, frame)
    self.frames_written += 1

  def close(self) -> None:
    (self._staged.tmp / FOLDER_MARK_FILE).write_text(OUTPUT_MARK + '\n')
    self._staged.commit()

  def abort(self) -> None:
    self._staged.discard()


class ImageWriter(_Writer):
  """Writes the one frame of a single-image input to an image file."""

  def __init__(self, path: str | os.PathLike, *, overwrite: bool = False):
    self.path = Path(path)
    if self.path.suffix.lower() not in files.IMAGE_EXTENSIONS:
      raise video_io.MediaError(self.path, f'not an image file name; use one of '
                       f'{files.IMAGE_EXTENSIONS}')
    self._staged = _Staged(self.path, overwrite)
    self.frames_written = 0

  def write(self, frame: np.ndarray, name: str | None = None, pts: int | None = None) -> None:
    del pts  # frames and images carry no time
    del name
    if self.frames_written:
      raise video_io.MediaError(self.path, 'an image file holds one frame; write to a folder instead')
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
      raise video_io.MediaError(self.path, 'no frame was written')
    self._staged.commit()

  def abort(self) -> None:
    self._staged.discard()
