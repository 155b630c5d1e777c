"""Calibration of the uncertainty head: sparsification against a brute-force count,
AUSE at its closed-form ends, and evaluate's report for a model with the head."""

import json

import cv2
import numpy as np
import pytest
from skimage import data as skdata

from clarity_jax.media import frames
from clarity_jax.evaluation import calibration
from clarity_jax.evaluation import evaluate
from clarity_jax.inference import bundle


def _brute_force(order_by, error, fraction):
  keep = np.argsort(-order_by, kind='stable')[int(fraction * error.size):]
  return error[keep].mean()


def test_sparsification_matches_removing_pixels_one_cut_at_a_time():
  rng = np.random.default_rng(0)
  error = rng.exponential(3.0, 997)
  predicted = error * rng.lognormal(0.0, 0.7, error.size)
  curve = calibration.sparsification(predicted, error)
  for i in (0, 1, 10, 50, 99):
    assert curve[i] == pytest.approx(_brute_force(predicted, error,
                                                  calibration.FRACTIONS[i]), rel=1e-12)


def _summary(predicted, error):
  samples = calibration.Samples()
  samples.predicted, samples.actual = [predicted], [error]
  return calibration.summarize(samples)


def test_a_perfect_ranking_is_the_oracle_and_a_blind_one_is_random():
  rng = np.random.default_rng(1)
  error = rng.exponential(3.0, 100_000)
  perfect = _summary(2.0 * error + 1.0, error)  # any increasing function ranks alike
  assert perfect['ause'] == pytest.approx(0.0, abs=1e-12)
  assert perfect['spearman'] == pytest.approx(1.0)
  at = perfect['mae_removed_10']
  assert at['uncertainty'] == at['oracle'] < at['random'] == pytest.approx(error.mean())

  blind = _summary(rng.random(error.size), error)
  assert abs(blind['spearman']) < 0.02
  # Removing pixels at random leaves the mean where it was, cut after cut (until
  # few pixels remain); the AUSE is then the oracle's whole gap to 1.
  curve = np.asarray(blind['curves']['uncertainty'])
  np.testing.assert_allclose(curve[:90], error.mean(), rtol=0.03)
  oracle = np.asarray(blind['curves']['oracle'])
  gap = 1.0 - oracle / oracle[0]
  assert blind['ause'] == pytest.approx(
      np.sum(0.5 * (gap[1:] + gap[:-1]) * np.diff(calibration.FRACTIONS)), rel=0.05)


def test_samples_crop_the_border_and_draw_the_same_pixels_per_seed():
  rng = np.random.default_rng(2)
  restored = rng.integers(0, 256, (300, 200, 3), dtype=np.uint8)
  gt = rng.integers(0, 256, (300, 200, 3), dtype=np.uint8)
  scale = (rng.permutation(300 * 200).reshape(300, 200) / 60000).astype(np.float32)  # distinct
  a, b = calibration.Samples(), calibration.Samples()
  a.add(restored, gt, scale, crop=4, seed=7)
  b.add(restored, gt, scale, crop=4, seed=7)
  (pa, ea), (pb, eb) = a.arrays(), b.arrays()
  np.testing.assert_array_equal(pa, pb)
  np.testing.assert_array_equal(ea, eb)
  assert ea.size == calibration.SAMPLES_PER_FRAME
  # Every sampled pair is a pixel of the cropped frame, error and scale together.
  error = np.abs(restored[4:-4, 4:-4].astype(np.float32) - gt[4:-4, 4:-4]).mean(-1)
  lookup = dict(zip((255.0 * scale[4:-4, 4:-4]).ravel().tolist(), error.ravel().tolist()))
  assert all(lookup[p] == pytest.approx(e) for p, e in zip(pa.tolist()[:500], ea.tolist()))
  small = calibration.Samples()
  small.add(restored[:20, :20], gt[:20, :20], scale[:20, :20], crop=2, seed=0)
  assert small.arrays()[1].size == 16 * 16  # fewer pixels than the sample: all of them


def test_evaluate_reports_calibration_for_a_model_with_the_head(tmp_path, random_params):
  photo = skdata.astronaut().astype(np.float32) / 255.0
  for t in range(3):
    gt = photo[100 + 2 * t:164 + 2 * t, 150 + 3 * t:246 + 3 * t]
    for kind, image in (('gt', gt), ('lq', cv2.resize(gt, (48, 32),
                                                        interpolation=cv2.INTER_AREA))):
      (tmp_path / kind / 'clip').mkdir(parents=True, exist_ok=True)
      frames.write_image(tmp_path / kind / 'clip' / f'{t:04d}.png', image)
  spec = bundle.ModelSpec('tiny', scale=2, num_neighbors=1, uncertainty=True)
  bundle.save_bundle(tmp_path / 'head', spec, random_params(spec, seed=4)[1], step=0)
  report = evaluate.run(bundles=[str(tmp_path / 'head')], names=['with head'],
                        lq=str(tmp_path / 'lq'), gt=str(tmp_path / 'gt'),
                        output=str(tmp_path / 'eval'), num_pictures=1, progress=False)
  c = report['results']['with head']['calibration']
  assert 'calibration' not in report['results']['bicubic']
  assert c['pixels'] == 3 * (64 - 4) * (96 - 4)  # every scored pixel, the border cropped
  assert -1.0 <= c['spearman'] <= 1.0 and c['ause'] >= 0.0
  assert c['mae_removed_10']['oracle'] <= c['mae_removed_10']['random']
  kinds = sorted(p['kind'] for p in report['calibration_pictures'])
  assert kinds == ['sparsification', 'uncertainty']
  for pic in report['calibration_pictures']:
    assert (tmp_path / 'eval' / pic['file']).is_file()
  saved = json.loads((tmp_path / 'eval' / 'metrics.json').read_text())
  assert saved['results']['with head']['calibration']['ause'] == pytest.approx(c['ause'])
  md = (tmp_path / 'eval' / 'results.md').read_text()
  assert '## Uncertainty calibration' in md and '| with head |' in md
