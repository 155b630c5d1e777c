"""Restored video out: H.264 in closed segments, so that a long job resumes.

Frames are encoded into segments of SEGMENT_FRAMES frames, each a complete file
in a hidden work folder beside the output (`.NAME.partial/`), renamed into place
only when whole. close() joins the segments' packets, unchanged, into the output
together with the input's audio and subtitles (media/passthrough.py), and removes
the work folder. A job stopped for any reason (Ctrl-C, SIGTERM, SIGKILL, power
loss) keeps its whole segments; the same command again finds them (the work
folder records what made them: input, model and settings) and restores only the
frames after them. x264 is deterministic, so the output equals an uninterrupted
run's byte for byte.

Why own segments and not FFmpeg's segment muxer: the segments must be readable
back packet for packet, with the input's timestamps, by the same process.
"""

from __future__ import annotations

import fractions
import os
from pathlib import Path
from typing import Any

from absl import logging
import av
import av.bitstream
import numpy as np

from clarity_jax import files
from clarity_jax.media import writers
from clarity_jax.media import passthrough as passthrough_lib
from clarity_jax.media import readers

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
# Frames per segment: what an interruption can cost (4 s at 25 frames/s; one
# keyframe each, ~1% of the size at CRF 18).
SEGMENT_FRAMES = 100


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


work_folder = writers.work_folder  # where the segments of a video wait


class VideoWriter(writers.Writer):
  """Encodes frames as they come: libx264 at CRF quality, in resumable segments.

  The pixel format follows the input (output_pix_fmt; yuv420p, what every player
  decodes, by default); 4:2:0 and 4:2:2 need even sizes: an odd height or width is
  padded by repeating the last row or column. Frames keep the input's timestamps
  when given (variable frame rate stays variable), and `passthrough` copies the
  input's audio and subtitles in sync. `job` (JSON-able) says what makes the
  frames; segments left by an interrupted writer with the same job are kept, and
  `frames_done` frames need not be written again. The container follows the file
  extension (.mp4, .mkv, .mov, .avi).
  """

  def __init__(self, path: str | os.PathLike, fps: fractions.Fraction | float | None, *,
               crf: int = DEFAULT_CRF, preset: str = DEFAULT_PRESET, overwrite: bool = False,
               pix_fmt: str = 'yuv420p', time_base: fractions.Fraction | None = None,
               passthrough: passthrough_lib.Passthrough | None = None,
               job: Any = None):
    self.path = Path(path)
    suffix = self.path.suffix.lower()
    if suffix not in H264_CONTAINERS:
      raise readers.MediaError(self.path, (
          f'{suffix} cannot hold the H.264 video written' if suffix in files.VIDEO_EXTENSIONS
          else 'not a video file name') + f'; use one of {", ".join(H264_CONTAINERS)}')
    self.fps = fractions.Fraction(fps or readers.DEFAULT_FPS).limit_denominator(1001)
    self.crf, self.preset, self.pix_fmt = int(crf), preset, pix_fmt
    # Without input timestamps, frame i is at i / fps.
    self.time_base = time_base or 1 / self.fps
    self._timed = time_base is not None
    self.passthrough = passthrough
    self._staged = writers.Staged(self.path, overwrite)
    self.parts = work_folder(self.path)
    self.frames_done = self._resume({'mark': writers.OUTPUT_MARK, 'job': job,
                                     'crf': self.crf, 'preset': preset, 'pix_fmt': pix_fmt,
                                     'segment_frames': SEGMENT_FRAMES})
    self.frames_written = self.frames_done
    self.size = None
    self._segment = None  # (container, stream, temporary path) of the open segment
    self._cut_audio = False

  def _resume(self, record: dict) -> int:
    """Frames in the whole segments of an earlier run of the same job."""
    if not writers.open_work_folder(self.parts, record):
      return 0
    done = 0
    while (self.parts / _segment_name(done)).is_file():
      done += 1
    self.keep_until(done * SEGMENT_FRAMES)
    if done:
      logging.warning('%s: resuming after frame %d (segments in %s)', self.path,
                      done * SEGMENT_FRAMES, self.parts)
    return done * SEGMENT_FRAMES

  def keep_until(self, frame: int) -> None:
    """Drops the segments from the one holding `frame` on, and any unfinished one
    (another writer of the same job may have kept fewer: all restart together)."""
    keep = frame // SEGMENT_FRAMES
    for path in self.parts.iterdir():
      if path.name.startswith('.') or (path.name != writers.JOB_FILE
                                       and path.name >= _segment_name(keep)):
        files.remove(path)
    self.frames_done = self.frames_written = keep * SEGMENT_FRAMES

  def write(self, frame: np.ndarray, name: str | None = None, pts: int | None = None) -> None:
    """Encodes one frame; `pts` (in `time_base`) is its time, else frame index / fps."""
    del name  # a video has no per-frame names
    deep = self.pix_fmt.endswith('10le')
    frame = files.to_uint16(frame) if deep else files.to_uint8(frame)
    h, w = frame.shape[:2]
    if self.size is None:
      self.size = (h, w)
      self._pad = (0, 0) if self.pix_fmt.startswith('yuv444') else (h % 2, w % 2)
      if any(self._pad):
        logging.warning('%s: %dx%d padded to even %dx%d for %s', self.path, w, h,
                        w + self._pad[1], h + self._pad[0], self.pix_fmt)
    elif (h, w) != self.size:
      raise readers.MediaError(self.path, f'frame {self.frames_written} is {w}x{h}, '
                                f'earlier frames are {self.size[1]}x{self.size[0]}')
    if any(self._pad):
      frame = np.pad(frame, ((0, self._pad[0]), (0, self._pad[1]), (0, 0)), mode='edge')
    out = av.VideoFrame.from_ndarray(np.ascontiguousarray(frame),
                                     format='rgb48le' if deep else 'rgb24')
    out.pts = pts if self._timed and pts is not None else self.frames_written
    out.time_base = self.time_base
    if self._segment is None:
      self._open_segment()
    self._encode(out)
    self.frames_written += 1
    if self.frames_written % SEGMENT_FRAMES == 0:
      self._close_segment()

  def end_audio_with_video(self) -> None:
    """Cuts the passed-through streams where the last frame ends (for outputs that
    stop early, as with --max_frames)."""
    self._cut_audio = True

  def _open_segment(self) -> None:
    index = self.frames_written // SEGMENT_FRAMES
    tmp = self.parts / f'.{_segment_name(index)}.tmp-{os.getpid()}.mp4'
    try:
      container = av.open(str(tmp), 'w')
      stream = container.add_stream('libx264', rate=self.fps)
      h, w = self.size
      stream.width, stream.height = w + self._pad[1], h + self._pad[0]
      stream.pix_fmt = self.pix_fmt
      stream.codec_context.time_base = self.time_base
      stream.time_base = self.time_base
      stream.options = {'crf': str(self.crf), 'preset': self.preset,
                        'rc-lookahead': str(X264_LOOKAHEAD)}
    except av.error.FFmpegError as e:
      raise readers.MediaError(self.path, 'cannot create video '
                                f'({readers.ffmpeg_reason(e)})') from e
    self._segment = (container, stream, tmp)

  def _encode(self, frame: av.VideoFrame | None) -> None:
    container, stream, _ = self._segment
    try:
      for packet in stream.encode(frame):
        container.mux(packet)
    except av.error.FFmpegError as e:
      raise readers.MediaError(self.path, f'encoding failed ({readers.ffmpeg_reason(e)})') from e

  def _close_segment(self) -> None:
    self._encode(None)  # the encoder's delayed frames
    container, _, tmp = self._segment
    container.close()
    self._segment = None
    index = (self.frames_written - 1) // SEGMENT_FRAMES
    os.replace(tmp, self.parts / _segment_name(index))

  def close(self) -> None:
    if self._segment is not None:
      self._close_segment()
    count = -(-self.frames_written // SEGMENT_FRAMES)
    if count == 0:
      self.abort()
      raise readers.MediaError(self.path, 'no frames were written')
    try:
      self._join([self.parts / _segment_name(i) for i in range(count)])
    except av.error.FFmpegError as e:
      self.abort()
      raise readers.MediaError(self.path, f'cannot write video ({readers.ffmpeg_reason(e)})') from e
    self._staged.commit()
    files.remove(self.parts)

  def _join(self, segments: list[Path]) -> None:
    """The segments' packets, unchanged, and the passed-through streams: the output."""
    with av.open(str(self._staged.tmp), 'w') as out:
      out.metadata['comment'] = writers.OUTPUT_MARK
      with av.open(str(segments[0])) as first:
        video = out.add_stream_from_template(first.streams.video[0])
      video.time_base = self.time_base
      if self.passthrough is not None:
        self.passthrough.add_streams(out)
      times: list[fractions.Fraction] = []
      for path in segments:
        with av.open(str(path)) as segment:
          stream = segment.streams.video[0]
          # AVI holds H.264 only in start-code form (Annex B); MP4 segments keep it in
          # length-prefixed form: convert, as FFmpeg's stream copy to .avi does.
          annexb = (av.bitstream.BitStreamFilterContext('h264_mp4toannexb', stream, video)
                    if self.path.suffix.lower() == '.avi' else None)
          for packet in segment.demux(stream):
            for packet in (annexb.filter(packet if packet.size else None) if annexb
                           else [packet] if packet.size else []):
              time = packet.pts * packet.time_base
              times.append(time)
              packet.stream = video
              out.mux(packet)
              if self.passthrough is not None:
                self.passthrough.mux_until(out, time)
      if self.passthrough is not None:
        end = None
        if self._cut_audio:
          times = sorted(times)[-2:]
          end = times[-1] + (times[-1] - times[0] if len(times) > 1 else 1 / self.fps)
        self.passthrough.finish(out, end)

  def abort(self) -> None:
    """Keeps the whole segments (the same command resumes from them); drops the
    open one and the unfinished output."""
    if self.passthrough is not None:
      self.passthrough.close()
    if self._segment is not None:
      container, _, tmp = self._segment
      try:
        container.close()
      except av.error.FFmpegError:
        pass
      self._segment = None
      files.remove(tmp)
    self._staged.discard()
    kept = sorted(p for p in self.parts.glob('seg-*.mp4')) if self.parts.is_dir() else []
    if kept:
      logging.warning('%s: stopped; the first %d frames are kept in %s: the same command '
                      'continues from there', self.path, len(kept) * SEGMENT_FRAMES, self.parts)
    else:
      files.remove(self.parts)


def _segment_name(index: int) -> str:
  return f'seg-{index:06d}.mp4'
