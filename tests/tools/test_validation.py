"""The validation protocol: ground truth from clips, the three fixed settings, the
cache, the gains table against independent PSNR, and the command's one-line errors."""

import json

import cv2
import numpy as np
import pytest
from skimage.metrics import peak_signal_noise_ratio

from clarity_jax.media import frames
from clarity_jax.evaluation import clips as clips_lib
from clarity_jax.evaluation import methods
from clarity_jax.tools import validation
from clarity_jax.inference import bundle
from clarity_jax.models import bicubic

NUM_FRAMES = 4


@pytest.fixture(scope='module')
def clips(tmp_path_factory, photo, write_video, smooth_frames):
  """A video (moving gradients) and a folder of frames (a panning photograph)."""
  root = tmp_path_factory.mktemp('validation')
  video = write_video(root / 'pan.mp4', smooth_frames(6, 128, 192))
  folder = root / 'photo'
  folder.mkdir()
  for t in range(5):
    frames.write_image(folder / f'{t:03d}.png', photo[4 * t:4 * t + 128, 6 * t:6 * t + 192])
  return root, video, folder


@pytest.fixture(scope='module')
def sets(clips):
  root, video, folder = clips
  return validation.prepare([video, folder], root / 'cache', num_frames=NUM_FRAMES)


def test_ground_truth_is_the_first_frames_area_downscaled(clips, sets, decode_all):
  _, video, folder = clips
  decoded, _ = decode_all(video)
  for name, source in (('pan', [f.astype(np.float32) / 255 for f in decoded]),
                       ('photo', [frames.read_image(p) for p in sorted(folder.iterdir())])):
    gt = sorted((sets / 'gt' / name).iterdir())
    assert len(gt) == NUM_FRAMES
    for path, frame in zip(gt, source):
      want = cv2.resize(frame, (96, 64), interpolation=cv2.INTER_AREA)
      np.testing.assert_allclose(frames.read_image(path), want, atol=1 / 255 + 1e-6)


def test_each_setting_is_degraded_at_its_own_strength(sets):
  for setting, ranges in validation.SETTINGS.items():
    for clip in ('pan', 'photo'):
      lq = sorted(p for p in (sets / setting / clip).iterdir() if p.suffix == '.png')
      assert [frames.read_image(p).shape for p in lq] == [(16, 24, 3)] * NUM_FRAMES
      sidecar = json.loads((sets / setting / clip / 'degradation.json').read_text())
      cfg = sidecar['degradation_config']
      assert cfg['kernel_types'] == ['motion'] and cfg['video_codec_prob'] == 1.0
      assert tuple(cfg['motion_length_range']) == ranges['motion_length_range']
      (params,) = [c['params'] for c in sidecar['clips'].values()]
      low, high = ranges['jpeg_quality_range']
      assert all(low <= f['quality'] <= high for f in params['jpeg']['frames'])
      low, high = ranges['video_crf_range']
      assert low <= params['video']['crf'] <= high


def test_the_sets_are_cached_and_keyed_by_the_protocol(clips, sets):
  root, video, folder = clips
  stamp = (sets / 'validation_set.json').stat().st_mtime_ns
  assert validation.prepare([video, folder], root / 'cache', num_frames=NUM_FRAMES) == sets
  assert (sets / 'validation_set.json').stat().st_mtime_ns == stamp
  other = validation.prepare([video], root / 'cache', num_frames=3, settings=['mild'])
  assert other != sets and sorted(p.name for p in other.iterdir()) == [
      'gt', 'mild', 'validation_set.json']
  assert not [p for p in (root / 'cache').iterdir() if p.name.startswith('.')]


def test_gains_against_an_independent_psnr(sets, random_params):
  spec = bundle.ModelSpec('tiny', scale=4, num_neighbors=1)
  path = sets.parent.parent / 'tiny_bundle'
  bundle.save_bundle(path, spec, random_params(spec, seed=2)[1], step=7)
  methods_ = [methods.bicubic_method(4), methods.load_method(str(path), 4, name='net')]
  table = validation.validate(methods_, sets, scale=4, settings=['moderate'], progress=False)
  rows = table['moderate']['net']
  # bicubic's PSNR by scikit-image on the same upsampling, 4 pixels of border cropped
  _, pairs = clips_lib.pair_clips(sets / 'moderate', sets / 'gt', scale=4)
  for clip in pairs:
    values = []
    for lq_path, gt_path in zip(clip.lq, clip.gt):
      up = np.clip(bicubic.upsample_frame(frames.read_image(lq_path), 4), 0, 1)
      gt = frames.read_image(gt_path)
      values.append(peak_signal_noise_ratio(
          np.round(gt[4:-4, 4:-4] * 255), np.round(up[4:-4, 4:-4] * 255), data_range=255))
    assert rows[clip.name]['bicubic_psnr'] == pytest.approx(np.mean(values), abs=1e-3)
    r = rows[clip.name]
    assert r['gain_psnr'] == pytest.approx(r['psnr'] - r['bicubic_psnr'])
  assert rows['mean']['gain_psnr'] == pytest.approx(
      np.mean([rows[c.name]['gain_psnr'] for c in pairs]))
  text = validation.markdown(table)
  assert '| moderate | net | **mean** |' in text and len(text.splitlines()) == 2 + 3


def test_bad_input(clips, tmp_path):
  root, video, folder = clips
  with pytest.raises(clips_lib.EvaluateError, match='unknown setting'):
    validation.setting_config('extreme')
  with pytest.raises(clips_lib.EvaluateError, match='no such file'):
    validation.prepare([root / 'nope.mp4'], tmp_path)
  with pytest.raises(clips_lib.EvaluateError, match='distinct'):
    validation.prepare([video, video], tmp_path)
  short = tmp_path / 'short'
  short.mkdir()
  for t in range(2):
    frames.write_image(short / f'{t}.png', np.zeros((32, 32, 3), np.float32))
  with pytest.raises(clips_lib.EvaluateError, match='at least 3'):
    validation.prepare([short], tmp_path / 'cache')
  assert not [p for p in (tmp_path / 'cache').iterdir()]
