"""Restores real footage with a bundle: a video file, a frame folder, clip folders or an image.

The streaming job behind `python -m clarity_jax.enhance` (clarity_jax/cli/enhance.py):
frames are decoded, restored (restorer.py: sliding windows, tiles, batches) and
encoded one at a time, so neither the length nor the size of the input sets the
memory it takes.

Output follows the output name: a video extension gives a video (same frame rate,
H.264, CRF 18, yuv420p), an image extension one image, anything else a folder of
frames with the input's names (clip folders kept). --compare also writes
OUTPUT_compare (same kind): bicubic | restored side by side, the bicubic being the
model's own global skip (models/bicubic.py), so the left half is exactly what the
network adds its residual to. --uncertainty (a model with the uncertainty head)
also writes OUTPUT_uncertainty: every frame's predicted error as a colour map with
its legend (uncertainty_map.py), and gives the comparison a third column.
"""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
import os
import re
from pathlib import Path
import time
from typing import Any
import zlib

import jax
import numpy as np
import tqdm

from clarity_jax import files
from clarity_jax.media import writers
from clarity_jax.media import passthrough
from clarity_jax.media import readers
from clarity_jax.media import video_writer
from clarity_jax.inference import restorer as restorer_lib
from clarity_jax.inference import uncertainty_map
from clarity_jax.models import bicubic

# The job's path errors and the engine's flag errors are one kind for the command.
EnhanceError = restorer_lib.EnhanceError


def _like(picture: np.ndarray, restored: np.ndarray) -> np.ndarray:
  """A uint8 picture in the restored frame's dtype (float for 10-bit outputs)."""
  return picture if restored.dtype == np.uint8 else picture.astype(np.float32) / 255.0


def side_by_side(lq: np.ndarray, restored: np.ndarray, scale: int,
                 error_scale: np.ndarray | None = None) -> np.ndarray:
  """bicubic | restored (| the uncertainty map, with its legend under all three),
  in the restored frame's dtype."""
  left = bicubic.upsample_frame(lq, scale)
  if restored.dtype == np.uint8:
    left = files.to_uint8(left)
  if error_scale is None:
    return np.concatenate([left, restored], axis=1)
  row = np.concatenate([left, restored, _like(uncertainty_map.colorize(error_scale),
                                              restored)], axis=1)
  return np.concatenate([row, _like(uncertainty_map.legend(row.shape[1]), restored)])


# ----------------------------------------------------------- inputs to outputs


def companion_path(output: Path, what: str) -> Path:
  """OUTPUT_<what> beside OUTPUT: video.mp4 -> video_compare.mp4, dir -> dir_compare."""
  return output.with_name(f'{output.stem}_{what}{output.suffix}')


def compare_path(output: Path) -> Path:
  return companion_path(output, 'compare')


def uncertainty_path(output: Path) -> Path:
  return companion_path(output, 'uncertainty')


def output_kind(source: readers.MediaInput, output: Path) -> str:
  """'video', 'image' or 'frames' for this input kind and output name."""
  suffix = output.suffix.lower()
  if suffix in files.VIDEO_EXTENSIONS:
    if source.kind == 'clips':
      raise EnhanceError(output, f'a folder of {len(source.clips)} clips needs a folder '
                         'output, not one video')
    return 'video'
  if suffix in files.IMAGE_EXTENSIONS:
    if source.kind != 'image':
      raise EnhanceError(output, f'an image output needs an image input; {source.path} '
                         f'is a {source.kind} input (write to a folder or a video)')
    return 'image'
  return 'frames'


def _frame_name(source: readers.MediaInput, clip: str, reader: Any, index: int) -> str:
  names = getattr(reader, 'names', None)
  name = names[index] if names is not None else f'{index:06d}.png'
  return f'{clip}/{name}' if source.kind == 'clips' else name


def _open_writer(kind: str, path: Path, source: readers.MediaInput, crf: int, preset: str,
                 overwrite: bool, job: dict[str, Any]):
  if kind == 'video':
    reader = next(iter(source.clips.values()))
    if source.kind != 'video':  # frames: evenly spaced, 8-bit 4:2:0
      return video_writer.VideoWriter(path, reader.fps, crf=crf, preset=preset,
                                      overwrite=overwrite, job=job)
    # Video to video: the input's timestamps, pixel format, audio and subtitles.
    return video_writer.VideoWriter(
        path, reader.fps, crf=crf, preset=preset, overwrite=overwrite, job=job,
        pix_fmt=video_writer.output_pix_fmt(reader.pix_fmt, reader.path),
        time_base=reader.time_base, passthrough=passthrough.Passthrough(reader.path))
  if kind == 'image':
    return writers.ImageWriter(path, overwrite=overwrite)
  return writers.FrameFolderWriter(path, overwrite=overwrite, job=job)


def _job(restorer: restorer_lib.Restorer, source: readers.MediaInput,
         max_frames: int | None) -> dict[str, Any]:
  """What makes the frames of an output: a resumed job must have the same."""
  digest = hashlib.sha256()
  for leaf in jax.tree.leaves(restorer.params):
    digest.update(np.asarray(leaf).tobytes())
  stat = source.path.stat()
  job = {'input': str(source.path.resolve()), 'input_bytes': stat.st_size,
         'input_mtime_ns': stat.st_mtime_ns, 'params_sha256': digest.hexdigest(),
         'tile': restorer.tile, 'tile_overlap': restorer.tile_overlap,
         'batch': restorer.batch, 'max_frames': max_frames}
  if restorer.engine is not None:  # absent for JAX: jobs written before engines resume
    job['engine'] = restorer.engine.name
  return job


def _frames_kept(writers: list[Any], source: readers.MediaInput, clip: str, reader: Any,
                 max_frames: int | None, batch: int) -> int:
  """The leading frames of `clip` that every writer has from a stopped run of the
  job, rounded down to whole batches: the restored batches then hold the windows an
  uninterrupted run's did, so the frames come out the same bytes."""
  limit = min(n for n in (reader.num_frames, max_frames, 2**62) if n)
  done = 0
  while done < limit and all(w.has(_frame_name(source, clip, reader, done))
                             for w in writers):
    done += 1
  return done // batch * batch


@dataclasses.dataclass
class Summary:
  output: Path
  compare: Path | None
  uncertainty: Path | None
  kind: str
  frames: int
  input_size: tuple[int, int]
  output_size: tuple[int, int]
  seconds: float
  restored: int  # by this run: fewer than `frames` when it resumed an interrupted job

  @property
  def fps(self) -> float:
    return self.restored / max(self.seconds, 1e-9)


def enhance(restorer: restorer_lib.Restorer, input_path: str | os.PathLike,
            output: str | os.PathLike, *,
            max_frames: int | None = None, compare: bool = False, overwrite: bool = False,
            crf: int = video_writer.DEFAULT_CRF, preset: str = video_writer.DEFAULT_PRESET,
            progress: bool = True) -> Summary:
  """Restores every clip of `input_path` into `output` (and its _compare twin; with
  a restorer.uncertainty, its _uncertainty maps).

  Inputs are opened and checked, and the output names reserved, before the first
  frame is restored; outputs appear under their names only once complete.
  """
  output = Path(output)
  source = readers.open_input(input_path)
  kind = output_kind(source, output)
  given = Path(input_path).resolve()
  maps = restorer.uncertainty
  companions = (['compare'] if compare else []) + (['uncertainty'] if maps else [])
  for out in [output] + [companion_path(output, c) for c in companions]:
    out = out.resolve()
    if out == given or out in given.parents:
      raise EnhanceError(output, 'the output would replace the input'
                         + ('' if out == given else f' folder holding {input_path}'))
  total = source.num_frames
  if total is not None and max_frames:
    total = sum(min(r.num_frames, max_frames) for r in source.clips.values())
  s = restorer.scale
  job = _job(restorer, source, max_frames) if kind != 'image' else {}
  writers = []
  try:
    writers.append(_open_writer(kind, output, source, crf, preset, overwrite, job))
    for companion in companions:
      writers.append(_open_writer(kind, companion_path(output, companion), source, crf,
                                  preset, overwrite, job))
  except BaseException:
    for writer in writers:
      writer.abort()
    raise
  # A video (one clip) interrupted earlier continues after its last whole segment.
  video_done = min(getattr(w, 'frames_done', 0) for w in writers)
  for writer in writers:
    if getattr(writer, 'frames_done', 0) > video_done:
      writer.keep_until(video_done)
  start = time.perf_counter()
  count = kept = 0
  try:
    with tqdm.tqdm(total=total, unit='frame', desc='enhance',
                   disable=not progress, dynamic_ncols=True, smoothing=0.1) as bar:
      for clip, reader in source.clips.items():
        bar.set_postfix_str(f'{clip} {reader.size[1]}x{reader.size[0]} -> '
                            f'{s * reader.size[1]}x{s * reader.size[0]}')
        # Frames of this clip that a stopped run of the same job wrote.
        first = (_frames_kept(writers, source, clip, reader, max_frames, restorer.batch)
                 if kind == 'frames' else video_done)
        bar.update(first)
        clip_frames = itertools.islice(iter(reader), max_frames)
        # uint8 frames unless a 10-bit video is written: the output's own precision,
        # and a quarter of float32's memory (a 4000x3000 photo is 16000x12000 at x4).
        restored = restorer_lib.enhance_frames_and_maps(
            restorer, clip_frames, start=first,
            uint8=not getattr(writers[0], 'pix_fmt', '').endswith('10le'))
        for i, (lq, out, error_scale) in enumerate(restored, start=first):
          name = _frame_name(source, clip, reader, i)
          # The reader has decoded frame i (and K more) by now: its time is known.
          pts = reader.timestamps[i] if kind == 'video' and source.kind == 'video' else None
          writers[0].write(out, name, pts=pts)
          for writer, companion in zip(writers[1:], companions):
            picture = (side_by_side(lq, out, s, error_scale) if companion == 'compare'
                       else _like(uncertainty_map.map_picture(error_scale), out))
            writer.write(picture, name, pts=pts)
          count += 1
          bar.update(1)
        kept += first
        if kind == 'video' and max_frames and (reader.num_frames is None
                                               or reader.num_frames > max_frames):
          for writer in writers:
            writer.end_audio_with_video()
    for writer in writers:
      writer.close()
  except BaseException:
    for writer in writers:
      writer.abort()
    raise
  h, w = next(iter(source.clips.values())).size
  return Summary(output=output, compare=compare_path(output) if compare else None,
                 uncertainty=uncertainty_path(output) if maps else None, kind=kind,
                 frames=kept + count, input_size=(h, w),
                 output_size=(s * h, s * w),
                 seconds=time.perf_counter() - start, restored=count)


def batch_output_name(video: Path) -> str:
  """A batch's output name for one input video: the same name, in .mp4 when the
  input's container cannot hold H.264 (.webm)."""
  suffix = video.suffix if video.suffix.lower() in video_writer.H264_CONTAINERS else '.mp4'
  return video.stem + suffix


def parse_shard(text: str) -> tuple[int, int]:
  """'I/N' -> (I, N): shard I (0-based) of N."""
  match = re.fullmatch(r'(\d+)/(\d+)', text.strip())
  if not match or not 0 <= int(match[1]) < int(match[2]):
    raise EnhanceError('--shard', f'want I/N with 0 <= I < N, e.g. 0/4; got {text!r}')
  return int(match[1]), int(match[2])


def shard_videos(videos: list[Path], index: int, count: int) -> list[Path]:
  """The videos of shard `index` of `count`, chosen by a hash of each file name
  (crc32, the same on every host and Python): the shards of one folder cover every
  video exactly once, and a video keeps its shard when others join the folder."""
  return [v for v in videos if zlib.crc32(v.name.encode()) % count == index]


def enhance_videos(restorer: restorer_lib.Restorer, videos: list[Path],
                   output: str | os.PathLike, *, compare: bool = False,
                   overwrite: bool = False, **kwargs: Any) -> list[Summary | None]:
  """A folder of videos -> a folder of outputs, one per video, in order.

  An output already complete (an earlier enhance output under its name, with its
  _compare twin when asked) is skipped, None in the list, unless `overwrite`; one
  interrupted half-way resumes (VideoWriter). `kwargs` go to enhance().
  """
  output = Path(output)
  if output.suffix.lower() in files.VIDEO_EXTENSIONS + files.IMAGE_EXTENSIONS:
    raise EnhanceError(output, f'a folder of {len(videos)} videos needs a folder output')
  if videos and output.resolve() == videos[0].parent.resolve():
    raise EnhanceError(output, 'the outputs would land among the input videos; choose '
                       'another folder')
  summaries: list[Summary | None] = []
  for video in videos:
    out = output / batch_output_name(video)
    wanted = ([out] + ([compare_path(out)] if compare else [])
              + ([uncertainty_path(out)] if restorer.uncertainty else []))
    if not overwrite and all(writers.is_marked_output(p) for p in wanted):
      summaries.append(None)
      continue
    summaries.append(enhance(restorer, video, out, compare=compare, overwrite=overwrite,
                             **kwargs))
  return summaries
