"""The audio and subtitle streams of an input video, carried into its restored output.

Restoration changes the picture only: every audio and subtitle stream of the
input is copied packet for packet (no re-encoding, so no loss and no drift), at
its own timestamps, interleaved with the video as it is written. A stream whose
codec the output container cannot hold is re-encoded only then: audio to AAC at
its timestamps; a subtitle stream (text codecs differ per container) is dropped
with a warning naming the container that keeps it.
"""

from __future__ import annotations

import fractions
from pathlib import Path
from typing import Iterator

from absl import logging
import av

# Which container keeps what, for the warning when one is dropped.
SUBTITLE_CONTAINER_HINT = 'write a .mkv output to keep it'


class Passthrough:
  """Demuxes the non-video streams of `source` and muxes them into `output`.

  Call add_streams() before the output's first packet, mux_until(t) as video up
  to time t is written (so the file stays interleaved and memory stays flat),
  and finish(end) once the video is complete; packets that start at or after
  `end` (e.g. with --max_frames) are left out, so audio ends with the picture.
  """

  def __init__(self, source: str | Path):
    self.source = Path(source)
    self._input = av.open(str(self.source))
    self._out: dict[int, av.stream.Stream] = {}
    self._reencode: dict[int, bool] = {}
    self._packets: Iterator[av.Packet] | None = None
    self._held: av.Packet | None = None
    self.copied: list[str] = []  # one line per stream, for the command's summary

  def add_streams(self, output: av.container.OutputContainer) -> None:
    supported = output.supported_codecs
    for stream in self._input.streams:
      if stream.type not in ('audio', 'subtitle'):
        continue
      codec = stream.codec_context.name if stream.codec_context else stream.codec.name
      what = f'{stream.type} stream {stream.index} ({codec})'
      if codec in supported:
        self._out[stream.index] = output.add_stream_from_template(stream)
        self._reencode[stream.index] = False
        self.copied.append(f'{what} copied')
      elif stream.type == 'audio':
        out = output.add_stream('aac', rate=stream.codec_context.sample_rate)
        out.layout = stream.codec_context.layout
        self._out[stream.index] = out
        self._reencode[stream.index] = True
        self.copied.append(f'{what} re-encoded to AAC')
        logging.warning('%s: %s re-encoded to AAC: %s cannot hold %s', self.source, what,
                        output.format.name, codec)
      else:
        logging.warning('%s: %s dropped: %s cannot hold %s; %s', self.source, what,
                        output.format.name, codec, SUBTITLE_CONTAINER_HINT)
    streams = [self._input.streams[i] for i in self._out]
    self._packets = iter(self._input.demux(*streams)) if streams else iter(())

  def mux_until(self, output: av.container.OutputContainer,
                seconds: fractions.Fraction | None) -> None:
    """Muxes every packet that starts before `seconds` (None: all of them)."""
    while True:
      packet = self._held if self._held is not None else next(self._packets, None)
      self._held = None
      if packet is None:
        return
      if packet.size == 0:  # the demuxer's end-of-stream marker
        continue
      start = _start(packet)
      if seconds is not None and start is not None and start >= seconds:
        self._held = packet
        return
      self._mux(output, packet)

  def finish(self, output: av.container.OutputContainer,
             end: fractions.Fraction | None = None) -> None:
    """The rest of the streams, up to `end`; then flushes the re-encoders."""
    self.mux_until(output, end)
    for index, out in self._out.items():
      if self._reencode[index]:
        for packet in out.encode(None):
          output.mux(packet)
    self.close()

  def close(self) -> None:
    if self._input is not None:
      self._input.close()
      self._input = None

  def _mux(self, output: av.container.OutputContainer, packet: av.Packet) -> None:
    index = packet.stream.index
    out = self._out[index]
    if not self._reencode[index]:
      packet.stream = out  # timestamps stay in the input's time base; mux rescales
      output.mux(packet)
      return
    rate = out.codec_context.sample_rate
    for frame in packet.decode():
      if frame.pts is not None:  # keep the input's timing: in samples of the encoder
        frame.pts = round(frame.pts * frame.time_base * rate)
        frame.time_base = fractions.Fraction(1, rate)
      for encoded in out.encode(frame):
        output.mux(encoded)


def _start(packet: av.Packet) -> fractions.Fraction | None:
  ts = packet.pts if packet.pts is not None else packet.dts
  if ts is None or packet.time_base is None:
    return None
  return ts * packet.time_base
