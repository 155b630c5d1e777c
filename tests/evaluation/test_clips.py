"""Pairing LQ clips with their ground truth, and the frames each protocol scores."""

from pathlib import Path

import numpy as np
import pytest

from clarity_jax.media import frames
from clarity_jax.evaluation import clips as clips_lib


def _clip(folder: Path, n: int, h: int, w: int) -> Path:
  folder.mkdir(parents=True)
  for t in range(n):
    frames.write_image(folder / f'{t:04d}.png', np.full((h, w, 3), t / 10, np.float32))
  return folder


def test_scale_is_inferred_and_ground_truth_may_exceed_it_by_less_than_a_step(tmp_path):
  _clip(tmp_path / 'lq' / 'a', 3, 8, 12)
  _clip(tmp_path / 'lq' / 'b', 3, 8, 12)
  _clip(tmp_path / 'gt' / 'a', 3, 35, 49)  # degrade's crop: 4 * 8 + 3, 4 * 12 + 1
  _clip(tmp_path / 'gt' / 'b', 3, 32, 48)
  _clip(tmp_path / 'gt' / 'unused', 3, 32, 48)  # ground truth without LQ: not scored
  scale, clips = clips_lib.pair_clips(tmp_path / 'lq', tmp_path / 'gt', max_frames=2)
  assert scale == 4
  assert [c.name for c in clips] == ['a', 'b']
  assert clips[0].lq_size == (8, 12) and clips[0].gt_size == (35, 49)
  assert [p.name for p in clips[1].gt] == ['0000.png', '0001.png']  # --max_frames=2
  assert [p.parent for p in clips[1].lq] == [tmp_path / 'lq' / 'b'] * 2


def test_two_single_clip_folders_are_paired_whatever_their_names(tmp_path):
  lq = _clip(tmp_path / 'blurry', 2, 8, 8)
  gt = _clip(tmp_path / 'sharp', 2, 16, 16)
  scale, clips = clips_lib.pair_clips(lq, gt)
  assert scale == 2 and len(clips) == 1
  assert clips[0].gt[0].parent == gt


def test_frames_pair_by_name_not_by_order(tmp_path):
  lq = _clip(tmp_path / 'lq' / 'a', 3, 8, 8)
  gt = _clip(tmp_path / 'gt' / 'a', 3, 16, 16)
  (gt / '0001.png').rename(gt / '0007.png')  # the same count, another frame
  with pytest.raises(clips_lib.EvaluateError) as e:
    clips_lib.pair_clips(lq.parent, gt.parent)
  assert str(e.value) == (f'{lq / "0001.png"}: has no ground truth of the same name in '
                          f'{gt} (the frame in its place is 0002.png)')


def test_a_given_scale_must_match(tmp_path):
  lq = _clip(tmp_path / 'lq' / 'a', 2, 8, 8)
  gt = _clip(tmp_path / 'gt' / 'a', 2, 16, 16)
  with pytest.raises(clips_lib.EvaluateError) as e:
    clips_lib.pair_clips(lq.parent, gt.parent, scale=4)
  assert str(e.value) == (f"{gt}: ground-truth frames of 16x16 do not match the 8x8 LQ "
                          "frames of clip 'a' at x4 (expected 32x32)")


def test_protocols_choose_the_scored_frames():
  assert list(clips_lib.included_frames(5, 'basicsr')) == [0, 1, 2, 3, 4]
  assert list(clips_lib.included_frames(5, 'fmanet')) == [1, 2, 3]
  with pytest.raises(ValueError, match='unknown protocol'):
    clips_lib.included_frames(5, 'vimeo')


def test_a_protocol_that_leaves_no_frame_is_refused(tmp_path):
  lq = _clip(tmp_path / 'lq' / 'short', 2, 8, 8)
  _clip(tmp_path / 'gt' / 'short', 2, 8, 8)
  scale, clips = clips_lib.pair_clips(tmp_path / 'lq', tmp_path / 'gt')
  assert scale == 1
  clips_lib.check_protocol(clips, 'basicsr')
  with pytest.raises(clips_lib.EvaluateError) as e:
    clips_lib.check_protocol(clips, 'fmanet')
  assert str(e.value) == (f"{lq}: clip 'short' has 2 frame(s); the fmanet protocol "
                          'leaves none to score')
