"""What is scored: LQ clips paired with their ground truth, and the frame protocols.

Inputs are checked here, before anything is restored: a clip without ground truth,
frames of a size that does not match the scale, empty folders each stop the run
with one line naming the clip folder.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Sequence

from absl import logging

from clarity_jax import errors
from clarity_jax.media import frames as frames_lib

SCALES = (1, 2, 4)
PROTOCOLS = {
    'basicsr': 'every frame of every clip (BasicSR, EDVR, BasicVSR++)',
    'fmanet': 'the first and last frame of each clip dropped (FMA-Net, CVPR 2024)',
}


class EvaluateError(errors.PathError):
  """Inputs or outputs that cannot be evaluated: '<path>: <what>'."""


@dataclasses.dataclass(frozen=True)
class Clip:
  """One LQ clip and its ground truth, frames paired by name."""
  name: str
  lq: tuple[Path, ...]
  gt: tuple[Path, ...]
  lq_size: tuple[int, int]  # (h, w)
  gt_size: tuple[int, int]  # as stored; scored on its top-left scale * lq_size


def pair_clips(lq_root: str | os.PathLike, gt_root: str | os.PathLike, *,
               scale: int | None = None, max_frames: int | None = None
               ) -> tuple[int, list[Clip]]:
  """(scale, clips): every LQ clip with its ground truth, checked.

  The scale is GT size // LQ size of the first clip unless given. Ground truth may
  exceed scale * LQ by less than `scale` pixels (degrade crops HR frames to a
  multiple of the scale): it is then scored on its top-left scale * LQ pixels.
  `max_frames` keeps the first N frames of every clip (the clip is then those N).
  Raises FrameError / EvaluateError naming the clip folder.
  """
  lq_root, gt_root = Path(lq_root), Path(gt_root)
  lq_clips = frames_lib.list_clips(lq_root)
  gt_clips = frames_lib.list_clips(gt_root)
  if frames_lib.is_one_clip(lq_clips, lq_root) and frames_lib.is_one_clip(gt_clips, gt_root):
    # Two single-clip folders: paired whatever their names.
    gt_clips = {next(iter(lq_clips)): next(iter(gt_clips.values()))}
  extra = sorted(set(gt_clips) - set(lq_clips))
  if extra:
    logging.warning('%s: %d ground-truth clip(s) without LQ are not scored, e.g. %s',
                    gt_root, len(extra), extra[0])
  out = []
  for name, lq in lq_clips.items():
    if name not in gt_clips:
      raise EvaluateError(lq[0].parent, f'clip {name!r} has no ground truth '
                          f'(no {gt_root / name})')
    gt = gt_clips[name]
    scale, lq_size, gt_size = _check_pair(name, lq, gt, scale)
    if max_frames:
      lq, gt = lq[:max_frames], gt[:max_frames]
    out.append(Clip(name, tuple(lq), tuple(gt), lq_size, gt_size))
  return scale, out


def _check_pair(name: str, lq: Sequence[Path], gt: Sequence[Path], scale: int | None
                ) -> tuple[int, tuple[int, int], tuple[int, int]]:
  """(scale, LQ size, GT size) of one clip pair (the scale as given unless None);
  EvaluateError / FrameError naming the clip folder."""
  lq_dir, gt_dir = lq[0].parent, gt[0].parent
  if len(lq) != len(gt):
    raise EvaluateError(lq_dir, f'clip {name!r} has {len(lq)} LQ frames but {len(gt)} '
                        f'ground-truth frames in {gt_dir}')
  for lq_path, gt_path in zip(lq, gt):  # paired by name, never by order alone
    if lq_path.stem != gt_path.stem:
      raise EvaluateError(lq_path, f'has no ground truth of the same name in {gt_dir} '
                          f'(the frame in its place is {gt_path.name})')
  lq_size = frames_lib.check_clip_sizes(name, lq)
  gt_size = frames_lib.check_clip_sizes(name, gt)
  (h, w), (gh, gw) = lq_size, gt_size
  if scale is None:
    scale = gh // h
    if scale not in SCALES or gw // w != scale:
      raise EvaluateError(gt_dir, f'ground-truth frames of {gw}x{gh} are not 1, 2 or 4 '
                          f'times the {w}x{h} LQ frames of clip {name!r}')
  if (gh // scale, gw // scale) != (h, w):
    raise EvaluateError(gt_dir, f'ground-truth frames of {gw}x{gh} do not match the '
                        f'{w}x{h} LQ frames of clip {name!r} at x{scale} (expected '
                        f'{scale * w}x{scale * h})')
  return scale, lq_size, gt_size


def included_frames(num_frames: int, protocol: str) -> range:
  """Indices of the frames a protocol scores."""
  if protocol == 'basicsr':
    return range(num_frames)
  if protocol == 'fmanet':
    return range(1, num_frames - 1)
  raise ValueError(f'unknown protocol {protocol!r}; one of {sorted(PROTOCOLS)}')


def check_protocol(clips: Sequence[Clip], protocol: str) -> None:
  """EvaluateError naming the first clip the protocol leaves no frame of."""
  for clip in clips:
    if not len(included_frames(len(clip.lq), protocol)):
      raise EvaluateError(clip.lq[0].parent, f'clip {clip.name!r} has {len(clip.lq)} '
                          f'frame(s); the {protocol} protocol leaves none to score')
