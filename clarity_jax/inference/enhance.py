"""Restores real footage with a bundle: a video file, a frame folder, clip folders or an image.

  python -m clarity_jax.enhance --bundle=BUNDLE --input=PATH --output=PATH \\
      [--max_frames=N] [--compare] [--tile=256] [--tile_overlap=16] [--batch=4] \\
      [--dtype=float32|bfloat16]

How a frame of any length of video and any size is restored:
  - time: a sliding window of 2K+1 frames with reflected edges (frame 0 sees
    frames 2,1,0,1,2 for K=2), so the output has exactly as many frames as the
    input; only a ring buffer of 2K+1 decoded frames is kept, so memory does not
    grow with the video's length (frames are read, restored and written as they go);
  - space: overlapping tiles of `tile` LQ pixels, all of the same shape (the last
    row and column of tiles are shifted back inside the frame rather than padded),
    so jit compiles once per video; tiles are cross-faded with raised-cosine
    ramps in the middle of each overlap (the quarter nearest a tile's edge, which
    saw the tile's artificial border, is dropped), so no seam is visible;
  - throughput: `batch` windows go through the network at once and the next tile
    is dispatched before the previous one is copied back.

Output follows the output name: a video extension gives a video (same frame rate,
H.264, CRF 18, yuv420p), an image extension one image, anything else a folder of
frames with the input's names (clip folders kept). --compare also writes
OUTPUT_compare (same kind): bicubic | restored side by side.
"""

from __future__ import annotations

import collections
import dataclasses
import functools
import itertools
import os
from pathlib import Path
import time
from typing import Any, Iterable, Iterator, Sequence

from absl import app
from absl import flags
import cv2
import jax
import jax.numpy as jnp
import numpy as np
import tqdm
from flax import nnx

from clarity_jax.inference import bundle as bundle_lib
from clarity_jax.cli import common as cli_errors
from clarity_jax.data import video_io
from clarity_jax.data import frames as frames_lib
from clarity_jax import errors


class EnhanceError(errors.PathError):
  """Flags or paths that cannot work together: '<flag or path>: <what>'."""


# ---------------------------------------------------------------- time: windows


def reflect_index(i: int, n: int) -> int:
  """Index i mirrored into [0, n) without repeating the edge (numpy 'reflect')."""
  if n == 1:
    return 0
  period = 2 * (n - 1)
  i %= period
  return i if i < n else period - i


def temporal_windows(frames: Iterable[np.ndarray], k: int
                     ) -> Iterator[tuple[np.ndarray, ...]]:
  """The 2K+1 frames centred on every frame in turn, edges reflected.

  Streams: holds only frames t-K .. t+K (a ring buffer), reading K frames ahead.
  Windows are tuples of references into that buffer, not stacked copies: at 4K
  a copy per window would cost more than the buffer itself. The length of the
  stream is learnt when it ends, which is exactly when the reflection at the
  far end is needed.
  """
  source = iter(frames)
  buffer: dict[int, np.ndarray] = {}
  n = None  # number of frames, once the source is exhausted
  read = 0
  t = 0
  while True:
    while n is None and read <= t + k:
      try:
        buffer[read] = next(source)
        read += 1
      except StopIteration:
        n = read
    if n is not None and t >= n:
      return
    # Before the end is known every index <= t+K has been read; negative ones
    # mirror to at most K.
    indices = [reflect_index(t + d, n) if n is not None else abs(t + d)
               for d in range(-k, k + 1)]
    yield tuple(buffer[i] for i in indices)
    buffer.pop(t - k, None)
    t += 1


# --------------------------------------------------------------- space: tiles


def tile_starts(size: int, tile: int, overlap: int) -> list[int]:
  """Start offsets of tiles of `tile` pixels covering [0, size), the last one flush
  with the end (shifted back, never padded: every tile sees real pixels)."""
  if tile >= size:
    return [0]
  stride = tile - overlap
  starts = list(range(0, size - tile, stride))
  return starts + [size - tile]


def blend_ramp(length: int, overlap: int, fade_in: bool, fade_out: bool) -> np.ndarray:
  """1-D tile weights for sides that meet another tile over `overlap` pixels.

  The outer quarter of the overlap gets weight 0 (those pixels saw the tile's
  artificial border, whose influence is strongest there), the middle half a
  raised-cosine ramp, the rest 1; sides on the frame border are not faded.
  Two tiles overlapping by exactly `overlap` get sin^2 and cos^2 over the same
  pixels, which sum to one; longer overlaps (the shifted last tile) are
  normalised by the weight sum, which the inner 1-region keeps positive.
  """
  margin = overlap // 4
  ramp = overlap - 2 * margin
  w = np.ones(length, np.float32)
  if ramp > 0:
    up = np.concatenate([
        np.zeros(margin, np.float32),
        np.sin(0.5 * np.pi * (np.arange(ramp, dtype=np.float32) + 0.5) / ramp) ** 2,
        np.ones(overlap - margin - ramp, np.float32)])
    if fade_in:
      w[:overlap] *= up
    if fade_out:
      w[length - overlap:] *= up[::-1]
  return w


def _axis_weights(size: int, tile: int, overlap: int, scale: int
                  ) -> tuple[list[int], list[np.ndarray], np.ndarray]:
  """Tile starts along one axis, their output-resolution ramps and 1 / their sum."""
  starts = tile_starts(size, tile, overlap)
  ramps = [blend_ramp(scale * tile, scale * overlap, s > 0, s + tile < size)
           for s in starts]
  total = np.zeros(scale * size, np.float32)
  for s, r in zip(starts, ramps):
    total[scale * s:scale * (s + tile)] += r
  return starts, ramps, 1.0 / total


# ------------------------------------------------------------------ the engine


# Programs traced so far (all Restorers): tests pin "compiled once per tile shape".
trace_count = 0


@functools.partial(jax.jit, static_argnames='graphdef')
def _restore_tiles(params: Any, lq: jax.Array, *, graphdef: nnx.GraphDef) -> jax.Array:
  """One batch of tiles through the network. Module-level, keyed by the graph: every
  Restorer of a model shares the compiled programs."""
  global trace_count
  trace_count += 1  # runs when tracing, never per call
  return jnp.clip(nnx.merge(graphdef, params)(lq), 0.0, 1.0)


class Restorer:
  """Restores batches of windows of any size with one compiled program per shape.

  Tiles are cut from the frames of each window as they are needed (a [batch,
  2K+1, tile, tile, 3] array at a time), so the only full-size arrays are the
  decoded frames and one float32 accumulator per restored frame. The weight sum
  of a tile grid is separable (a product of per-axis sums), so blending needs
  two 1-D normalisers instead of a full-frame weight map.
  """

  def __init__(self, graphdef: nnx.GraphDef, params: Any, *, scale: int,
               num_neighbors: int, tile: int = 256, tile_overlap: int = 16, batch: int = 4):
    if tile and not 2 * tile_overlap < tile:
      raise EnhanceError(f'--tile_overlap: {tile_overlap} must be less than half of '
                         f'--tile ({tile})')
    if batch < 1:
      raise EnhanceError(f'--batch: must be >= 1, got {batch}')
    self.scale, self.num_neighbors = scale, num_neighbors
    self.tile, self.tile_overlap, self.batch = tile, tile_overlap, batch
    self.graphdef = graphdef
    self.params = jax.device_put(params)
    self._weights: dict[tuple[int, int], Any] = {}

  @classmethod
  def from_bundle(cls, path: str | os.PathLike, dtype: str = 'float32', **kwargs
                  ) -> tuple['Restorer', bundle_lib.BundleInfo]:
    graphdef, params, info = bundle_lib.load_params(path, dtype)
    return cls(graphdef, params, scale=info.model.scale,
               num_neighbors=info.model.num_neighbors, **kwargs), info

  def tile_shape(self, h: int, w: int) -> tuple[int, int]:
    return (min(self.tile, h), min(self.tile, w)) if self.tile else (h, w)

  def __call__(self, windows: Sequence[Sequence[np.ndarray]]) -> list[np.ndarray]:
    """Restores up to `batch` windows (each 2K+1 float [h, w, 3] frames in [0, 1],
    e.g. a [n, 2K+1, h, w, 3] array) -> n float32 [s h, s w, 3] frames in [0, 1].

    Each restored frame is its own array, so a caller holding one frame does not
    keep a whole batch alive.
    """
    n, t = len(windows), len(windows[0])
    h, w = windows[0][0].shape[:2]
    if not 0 < n <= self.batch or t != 2 * self.num_neighbors + 1:
      raise ValueError(f'Restorer: want 1..{self.batch} windows of '
                       f'{2 * self.num_neighbors + 1} frames, got {n} of {t}')
    # A short last batch repeats its last window: the same shape, no recompilation.
    padded = list(windows) + [windows[-1]] * (self.batch - n)
    th, tw = self.tile_shape(h, w)
    if (h, w) not in self._weights:
      self._weights[(h, w)] = (_axis_weights(h, th, self.tile_overlap, self.scale),
                               _axis_weights(w, tw, self.tile_overlap, self.scale))
    (ys, ramps_y, norm_y), (xs, ramps_x, norm_x) = self._weights[(h, w)]
    s = self.scale
    out = [np.zeros((s * h, s * w, 3), np.float32) for _ in range(n)]
    pending = collections.deque()
    for (y, ry), (x, rx) in itertools.product(zip(ys, ramps_y), zip(xs, ramps_x)):
      lq = np.stack([np.stack([f[y:y + th, x:x + tw] for f in win]) for win in padded])
      # Dispatch is asynchronous: this tile computes while the last one is blended.
      pending.append((y, x, ry, rx, _restore_tiles(self.params, lq.astype(np.float32),
                                                   graphdef=self.graphdef)))
      if len(pending) > 1:
        self._blend(out, *pending.popleft())
    while pending:
      self._blend(out, *pending.popleft())
    for frame in out:
      frame *= norm_y[:, None, None]
      frame *= norm_x[None, :, None]
    return out

  def _blend(self, out: list[np.ndarray], y: int, x: int, ry: np.ndarray, rx: np.ndarray,
             restored: jax.Array) -> None:
    s = self.scale
    tiles = np.asarray(restored)
    th, tw = tiles.shape[1:3]
    weight = ry[:, None, None] * rx[None, :, None]
    for frame, tile in zip(out, tiles):  # padded windows beyond len(out) are dropped
      frame[s * y:s * y + th, s * x:s * x + tw] += tile * weight


def restore_frames(restorer: Restorer, frames: Iterable[np.ndarray]
                   ) -> Iterator[tuple[np.ndarray, np.ndarray]]:
  """(LQ frame, restored frame) for every input frame, in order, streaming."""
  k = restorer.num_neighbors
  batch: list[tuple[np.ndarray, ...]] = []
  for window in temporal_windows(frames, k):
    batch.append(window)
    if len(batch) == restorer.batch:
      yield from zip((w[k] for w in batch), restorer(batch))
      batch = []
  if batch:
    yield from zip((w[k] for w in batch), restorer(batch))


def bicubic_upscale(frame: np.ndarray, scale: int) -> np.ndarray:
  """The baseline shown beside the restoration (OpenCV bicubic, clipped)."""
  h, w = frame.shape[:2]
  up = cv2.resize(frame, (w * scale, h * scale), interpolation=cv2.INTER_CUBIC)
  return np.clip(up, 0.0, 1.0)


def side_by_side(lq: np.ndarray, restored: np.ndarray, scale: int) -> np.ndarray:
  """bicubic | restored, one frame wide twice."""
  return np.concatenate([bicubic_upscale(lq, scale), restored], axis=1)


# ----------------------------------------------------------- inputs to outputs


def compare_path(output: Path) -> Path:
  """OUTPUT_compare beside OUTPUT: video.mp4 -> video_compare.mp4, dir -> dir_compare."""
  return output.with_name(f'{output.stem}_compare{output.suffix}')


def output_kind(source: video_io.Source, output: Path) -> str:
  """'video', 'image' or 'frames' for this input kind and output name."""
  suffix = output.suffix.lower()
  if suffix in video_io.VIDEO_EXTENSIONS:
    if source.kind == 'clips':
      raise EnhanceError(output, f'a folder of {len(source.clips)} clips needs a folder '
                         'output, not one video')
    return 'video'
  if suffix in frames_lib.IMAGE_EXTENSIONS:
    if source.kind != 'image':
      raise EnhanceError(output, f'an image output needs an image input; {source.path} '
                         f'is a {source.kind} input (write to a folder or a video)')
    return 'image'
  return 'frames'


def _frame_name(source: video_io.Source, clip: str, reader: Any, index: int) -> str:
  names = getattr(reader, 'names', None)
  name = names[index] if names is not None else f'{index:06d}.png'
  return f'{clip}/{name}' if source.kind == 'clips' else name


def _open_writer(kind: str, path: Path, fps: Any, crf: int, preset: str, overwrite: bool):
  if kind == 'video':
    return video_io.VideoWriter(path, fps, crf=crf, preset=preset, overwrite=overwrite)
  if kind == 'image':
    return video_io.ImageWriter(path, overwrite=overwrite)
  return video_io.FrameFolderWriter(path, overwrite=overwrite)


@dataclasses.dataclass
class Summary:
  output: Path
  compare: Path | None
  kind: str
  frames: int
  input_size: tuple[int, int]
  output_size: tuple[int, int]
  seconds: float

  @property
  def fps(self) -> float:
    return self.frames / max(self.seconds, 1e-9)


def enhance(restorer: Restorer, input_path: str | os.PathLike, output: str | os.PathLike, *,
            max_frames: int | None = None, compare: bool = False, overwrite: bool = False,
            crf: int = video_io.DEFAULT_CRF, preset: str = video_io.DEFAULT_PRESET,
            progress: bool = True) -> Summary:
  """Restores every clip of `input_path` into `output` (and its _compare twin).

  Inputs are opened and checked, and the output names reserved, before the first
  frame is restored; outputs appear under their names only once complete.
  """
  output = Path(output)
  source = video_io.open_source(input_path)
  kind = output_kind(source, output)
  if Path(input_path).resolve() in (output.resolve(), compare_path(output).resolve()):
    raise EnhanceError(output, 'the output would replace the input')
  fps = next(iter(source.clips.values())).fps
  total = source.num_frames
  if total is not None and max_frames:
    total = sum(min(r.num_frames, max_frames) for r in source.clips.values())
  s = restorer.scale
  writers = [_open_writer(kind, output, fps, crf, preset, overwrite)]
  if compare:
    writers.append(_open_writer(kind, compare_path(output), fps, crf, preset, overwrite))
  start = time.perf_counter()
  count = 0
  try:
    with tqdm.tqdm(total=total, unit='frame', desc='enhance', disable=not progress,
                   dynamic_ncols=True, smoothing=0.1) as bar:
      for clip, reader in source.clips.items():
        bar.set_postfix_str(f'{clip} {reader.size[1]}x{reader.size[0]} -> '
                            f'{s * reader.size[1]}x{s * reader.size[0]}')
        clip_frames = itertools.islice(iter(reader), max_frames)
        for i, (lq, out) in enumerate(restore_frames(restorer, clip_frames)):
          name = _frame_name(source, clip, reader, i)
          writers[0].write(out, name)
          if compare:
            writers[1].write(side_by_side(lq, out, s), name)
          count += 1
          bar.update(1)
    for writer in writers:
      writer.close()
  except BaseException:
    for writer in writers:
      writer.abort()
    raise
  h, w = next(iter(source.clips.values())).size
  return Summary(output=output, compare=compare_path(output) if compare else None,
                 kind=kind, frames=count, input_size=(h, w), output_size=(s * h, s * w),
                 seconds=time.perf_counter() - start)


def define_flags() -> None:
  """The CLI's flags, defined only when run as a program: importing this module
  (tests, evaluate) must not claim --input/--output in absl's global registry."""
  flags.DEFINE_string('bundle', None, 'Inference bundle (clarity_jax.export).')
  flags.DEFINE_string('input', None, 'Video file, image, frame folder or folder of clip '
                      'folders.')
  flags.DEFINE_string('output', None, 'Video file, image file or folder.')
  flags.DEFINE_integer('max_frames', None, 'Restore only the first N frames of each clip.',
                       lower_bound=1)
  flags.DEFINE_bool('compare', False, 'Also write OUTPUT_compare: bicubic | restored side '
                    'by side.')
  flags.DEFINE_integer('tile', 256, 'Tile size in input pixels; 0: whole frames.',
                       lower_bound=0)
  flags.DEFINE_integer('tile_overlap', 16, 'Overlap of neighbouring tiles in input pixels '
                       '(cross-faded).', lower_bound=0)
  flags.DEFINE_integer('batch', 4, 'Windows restored at once.', lower_bound=1)
  flags.DEFINE_enum('dtype', 'float32', ['float32', 'bfloat16'],
                    'Computation dtype (bfloat16 on GPU/TPU).')
  flags.DEFINE_integer('crf', video_io.DEFAULT_CRF, 'x264 quality of video outputs (lower '
                       'is better).', lower_bound=0, upper_bound=51)
  flags.DEFINE_enum('preset', video_io.DEFAULT_PRESET, list(video_io.X264_PRESETS),
                    'x264 speed of video outputs: faster presets make larger files at '
                    'the same --crf (a 4K encode at medium costs ~375 CPU-ms a frame; '
                    'benchmark --what=output).')
  flags.DEFINE_bool('overwrite', False, 'Replace an existing output (only once the new one '
                    'is complete).')
  flags.DEFINE_bool('progress', True, 'Show a progress bar.')
  flags.mark_flags_as_required(['bundle', 'input', 'output'])


@cli_errors.exit_on_error()
def main(argv: list[str]) -> None:
  cli_errors.start(argv, quiet=True)
  f = flags.FLAGS
  restorer, info = Restorer.from_bundle(f.bundle, f.dtype, tile=f.tile,
                                        tile_overlap=f.tile_overlap, batch=f.batch)
  summary = enhance(restorer, f.input, f.output, max_frames=f.max_frames,
                    compare=f.compare, overwrite=f.overwrite, crf=f.crf,
                    preset=f.preset, progress=f.progress)
  print(f'{summary.output}: {summary.frames} frames {summary.input_size[1]}x'
        f'{summary.input_size[0]} -> {summary.output_size[1]}x{summary.output_size[0]} '
        f'({info.model.variant} x{info.model.scale}, {summary.fps:.2f} frames/s)'
        + (f'; side by side: {summary.compare}' if summary.compare else ''), flush=True)


if __name__ == '__main__':
  define_flags()
  app.run(main)
