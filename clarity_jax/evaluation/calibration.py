"""How well the uncertainty head's predicted error ranks the real one.

For a model with the head (models/claritynet.py), evaluate pairs every scored
pixel's predicted Laplace scale b with its actual error |restored - GT| (mean
over RGB, in grey levels, the border cropped as for PSNR) and reports:

  spearman        rank correlation of b and the error: does the head put its
                  high values where the errors are?
  sparsification  the mean absolute error of the pixels left after removing the
                  most uncertain ones first, for removed fractions 0 .. 0.99;
                  against the oracle (the truly worst removed first: the best any
                  ranking can do) and random removal (the mean does not move);
  AUSE            the area between the model's and the oracle's curves, each
                  divided by the error with nothing removed (0: a perfect ranking);
  mae_removed_10  the error left after removing the 10% most uncertain, beside
                  random's and the oracle's.

Pixels are sampled (SAMPLES_PER_FRAME per frame, at fixed seeds) rather than
kept: 720p at x4 is 3.7 million pixels a frame. Curves and numbers follow the
usual definition (Ilg et al., ECCV 2018; Poggi et al., CVPR 2020).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
import scipy.stats

SAMPLES_PER_FRAME = 20_000
FRACTIONS = np.round(np.arange(0.0, 1.0, 0.01), 2)  # removed shares of the pixels
REPORT_FRACTION = 0.1


@dataclasses.dataclass
class Samples:
  """Per-pixel (predicted scale, actual error) pairs, both in grey levels of 255."""
  predicted: list[np.ndarray] = dataclasses.field(default_factory=list)
  actual: list[np.ndarray] = dataclasses.field(default_factory=list)

  def add(self, restored: np.ndarray, gt: np.ndarray, scale: np.ndarray, crop: int,
          seed: int) -> None:
    """One frame: uint8 restored and GT [H, W, 3], b [H, W] in [0, 1] units; `crop`
    border pixels dropped; SAMPLES_PER_FRAME pixels drawn with `seed`."""
    if crop:
      restored, gt, scale = (a[crop:-crop, crop:-crop] for a in (restored, gt, scale))
    error = np.abs(restored.astype(np.float32) - gt.astype(np.float32)).mean(-1).ravel()
    predicted = 255.0 * np.asarray(scale, np.float32).ravel()
    if error.size > SAMPLES_PER_FRAME:
      pick = np.random.default_rng(seed).choice(error.size, SAMPLES_PER_FRAME, replace=False)
      error, predicted = error[pick], predicted[pick]
    self.actual.append(error)
    self.predicted.append(predicted)

  def __bool__(self) -> bool:
    return bool(self.actual)

  def arrays(self) -> tuple[np.ndarray, np.ndarray]:
    return np.concatenate(self.predicted), np.concatenate(self.actual)


def sparsification(order_by: np.ndarray, error: np.ndarray,
                   fractions: np.ndarray = FRACTIONS) -> np.ndarray:
  """Mean error of the pixels left after removing the `fractions` with the largest
  `order_by` first (ties broken by position, a stable sort)."""
  order = np.argsort(-order_by, kind='stable')
  # The mean of the kept tail, for every cut at once: suffix sums of the error.
  tail = np.cumsum(error[order][::-1])[::-1]
  n = error.size
  cuts = np.minimum((fractions * n).astype(int), n - 1)
  return tail[cuts] / (n - cuts)


def ause(model: np.ndarray, oracle: np.ndarray, fractions: np.ndarray = FRACTIONS) -> float:
  """Area between the model's and the oracle's sparsification curves, each
  normalised by the error with nothing removed (trapezoids over `fractions`)."""
  gap = model / model[0] - oracle / oracle[0]
  return float(np.sum(0.5 * (gap[1:] + gap[:-1]) * np.diff(fractions)))


def summarize(samples: Samples) -> dict[str, Any]:
  """Spearman, the three curves, AUSE and the 10% figures, for metrics.json."""
  predicted, error = samples.arrays()
  model = sparsification(predicted, error)
  oracle = sparsification(error, error)
  at = int(np.argmin(np.abs(FRACTIONS - REPORT_FRACTION)))
  return {
      'pixels': int(error.size),
      'spearman': float(scipy.stats.spearmanr(predicted, error).statistic),
      'ause': ause(model, oracle),
      'mae': float(error.mean()),
      'mean_predicted': float(predicted.mean()),
      f'mae_removed_{round(100 * REPORT_FRACTION)}': {
          'uncertainty': float(model[at]), 'random': float(error.mean()),
          'oracle': float(oracle[at])},
      'curves': {'fractions': FRACTIONS.tolist(), 'uncertainty': model.tolist(),
                 'oracle': oracle.tolist(), 'random': [float(error.mean())] * len(FRACTIONS)},
  }
