"""The numbers of one frame, and how they are averaged (docs/evaluation.md).

PSNR / SSIM on RGB and on Y (BT.601) in [0, 255] of the 8-bit outputs with
`scale` pixels of border cropped; LPIPS only when weights are given (else None:
"unavailable", never estimated). Per frame, then the mean per clip, then the mean
over clips.
"""

from __future__ import annotations

import functools
from typing import Any, Iterable

from flax import nnx
import jax
import jax.numpy as jnp
import numpy as np

from clarity_jax import metrics
from clarity_jax.models import lpips as lpips_lib

# Per-frame scores, in table order.
FRAME_METRICS = ('psnr', 'ssim', 'psnr_y', 'ssim_y', 'lpips')
# Scores of a whole clip (over its scored frames).
CLIP_METRICS = ('tof', 'flicker')


@functools.partial(jax.jit, static_argnames='crop')
def _frame_scores(pred: jax.Array, gt: jax.Array, crop: int) -> dict[str, jax.Array]:
  """PSNR / SSIM on RGB and Y of one pair of 8-bit frames [H, W, 3]."""
  pred, gt = pred.astype(jnp.float32), gt.astype(jnp.float32)
  return {'psnr': metrics.psnr(pred, gt, crop_border=crop),
          'ssim': metrics.ssim(pred, gt, crop_border=crop),
          'psnr_y': metrics.psnr(pred, gt, crop_border=crop, y_channel=True),
          'ssim_y': metrics.ssim(pred, gt, crop_border=crop, y_channel=True)}


class LpipsScorer:
  """LPIPS of 8-bit frames with the same border crop, one jitted program per size."""

  def __init__(self, model: lpips_lib.LPIPS):
    graphdef, state = nnx.split(model)
    self.net = model.net
    self._state = state
    self._fn = jax.jit(lambda s, a, b: nnx.merge(graphdef, s)(a, b))

  def __call__(self, pred: np.ndarray, gt: np.ndarray, crop: int) -> float:
    if crop:
      pred, gt = pred[crop:-crop, crop:-crop], gt[crop:-crop, crop:-crop]
    to01 = lambda x: jnp.asarray(x, jnp.float32) / 255.0
    return float(self._fn(self._state, to01(pred), to01(gt)))


def score_frame(pred: np.ndarray, gt: np.ndarray, crop: int,
                lpips: LpipsScorer | None = None) -> dict[str, float | None]:
  """Every per-frame metric of two uint8 [H, W, 3] frames (lpips None: unavailable)."""
  scores = {k: float(v) for k, v in _frame_scores(pred, gt, crop).items()}
  scores['lpips'] = lpips(pred, gt, crop) if lpips is not None else None
  return scores


def mean(values: Iterable[float | None]) -> float | None:
  """The mean of the available values; None when there are none (LPIPS off)."""
  values = [v for v in values if v is not None]
  return float(np.mean(values)) if values else None


def clip_scores(outputs: list[np.ndarray], gts: list[np.ndarray],
                per_frame: dict[str, dict[str, float | None]], scored: Iterable[int]
                ) -> dict[str, Any]:
  """One clip's entry of metrics.json: per-frame means, tOF and flicker over the
  scored frames (None with fewer than two), and the per-frame scores."""
  keep = sorted(scored)
  temporal = len(keep) >= 2
  kept_out = np.stack([outputs[i] for i in keep])
  kept_gt = np.stack([gts[i] for i in keep])
  return {
      'mean': {k: mean(f[k] for f in per_frame.values()) for k in FRAME_METRICS},
      'tof': metrics.tof(kept_out, kept_gt) if temporal else None,
      'flicker': metrics.flicker(kept_out, kept_gt) if temporal else None,
      'frames': per_frame,
  }


def method_means(clip_entries: Iterable[dict[str, Any]]) -> dict[str, float | None]:
  """The mean over clips of every metric of one method."""
  clip_entries = list(clip_entries)
  out = {k: mean(c['mean'][k] for c in clip_entries) for k in FRAME_METRICS}
  for k in CLIP_METRICS:
    out[k] = mean(c[k] for c in clip_entries)
  return out
