"""What an evaluation writes: metrics.json (every number and the protocol that made
it) and results.md (the same as Markdown tables, the protocol beside them).

The tables are public: launch/ builds its experiment pages from them.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
import platform
from typing import Any, Sequence

import jax

from clarity_jax import files
from clarity_jax.evaluation import calibration
from clarity_jax.evaluation import clips as clips_lib
from clarity_jax.evaluation import pictures
from clarity_jax.evaluation import scores

METRICS_FILE = 'metrics.json'
RESULTS_FILE = 'results.md'


def protocol_record(protocol: str, scale: int, clips: Sequence[clips_lib.Clip],
                    max_frames: int | None, lpips: scores.LpipsScorer | None,
                    lpips_path: str, tile: int) -> dict[str, Any]:
  """The protocol as metrics.json records it: written next to every number."""
  included, dropped = {}, {}
  for clip in clips:
    keep = set(clips_lib.included_frames(len(clip.gt), protocol))
    included[clip.name] = [p.name for i, p in enumerate(clip.gt) if i in keep]
    dropped[clip.name] = [p.name for i, p in enumerate(clip.gt) if i not in keep]
  return {
      'name': protocol,
      'frames': clips_lib.PROTOCOLS[protocol],
      'channels': ['RGB', 'Y (BT.601, MATLAB rgb2ycbcr, [16, 235])'],
      'range': '[0, 255]: outputs quantised to 8 bits (clip, round) before scoring',
      'crop_border': scale,
      'scale': scale,
      'psnr': '10 log10(255^2 / MSE) per frame',
      'ssim': ('Wang et al. 2004: 11x11 Gaussian window, sigma 1.5, K1 0.01, K2 0.03, '
               'averaged over channels (= skimage structural_similarity with '
               'gaussian_weights=True, use_sample_covariance=False)'),
      'lpips': (f'LPIPS v0.1 {lpips.net} from {lpips_path}, RGB, same border crop'
                if lpips is not None else
                'unavailable (no --lpips_weights file given; never estimated)'),
      'tof': ('TecoGAN / FMA-Net tOF: mean length of the difference between OpenCV '
              'Farneback flows of consecutive output and GT frames, pixels, over '
              'consecutive scored frames of each clip'),
      'flicker': ('mean |(out[t+1] - out[t]) - (gt[t+1] - gt[t])| over consecutive '
                  'scored frames, [0, 255]'),
      'averaging': 'per frame -> mean per clip -> mean over clips',
      'temporal_window': 'sliding window of 2K+1 frames, reflected at clip edges',
      'tile': tile or 'whole frames',
      'max_frames': max_frames,
      'num_clips': len(clips),
      'num_frames_included': sum(len(v) for v in included.values()),
      'num_frames_dropped': sum(len(v) for v in dropped.values()),
      'frames_included': included,
      'frames_dropped': dropped,
  }


def machine_description() -> str:
  """The CPU and JAX devices the timings were taken on."""
  devices = jax.devices()
  return (f'{platform.processor() or platform.machine()}, {os.cpu_count()} CPU cores '
          f'visible, JAX {jax.__version__} on {len(devices)} {devices[0].platform} '
          f'device(s) ({devices[0].device_kind})')


def write(folder: Path, report: dict[str, Any]) -> None:
  """folder/METRICS_FILE and folder/RESULTS_FILE, each written atomically."""
  files.write_text(folder / METRICS_FILE, json.dumps(_json_safe(report), indent=1,
                                                     allow_nan=False) + '\n')
  files.write_text(folder / RESULTS_FILE, results_markdown(report))


def _json_safe(value: Any) -> Any:
  """JSON has no inf / nan: PSNR of identical frames is written as the string 'inf'."""
  if isinstance(value, float) and not math.isfinite(value):
    return str(value)
  if isinstance(value, dict):
    return {k: _json_safe(v) for k, v in value.items()}
  if isinstance(value, (list, tuple)):
    return [_json_safe(v) for v in value]
  return value


# ------------------------------------------------------------------ tables


def _fmt(value: float | str | None, digits: int) -> str:
  if value is None:
    return 'n/a'
  if isinstance(value, str) or not math.isfinite(value):
    return str(value)
  return f'{value:.{digits}f}'


def summary_table(report: dict[str, Any]) -> str:
  """Mean over clips of every metric, one row per method (Markdown)."""
  lpips_on = any(r['mean']['lpips'] is not None for r in report['results'].values())
  rows = ['| method | PSNR (dB) | SSIM | PSNR-Y (dB) | SSIM-Y | LPIPS | tOF | flicker '
          '| ms / frame |', '| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |']
  for name, result in report['results'].items():
    m = result['mean']
    rows.append(f'| {name} | {_fmt(m["psnr"], 2)} | {_fmt(m["ssim"], 4)} | '
                f'{_fmt(m["psnr_y"], 2)} | {_fmt(m["ssim_y"], 4)} | '
                f'{_fmt(m["lpips"], 4) if lpips_on else "unavailable"} | '
                f'{_fmt(m["tof"], 3)} | {_fmt(m["flicker"], 2)} | '
                f'{_fmt(result["ms_per_frame"], 0)} |')
  return '\n'.join(rows) + '\n'


def clip_table(report: dict[str, Any], metric: str = 'psnr', digits: int = 2) -> str:
  """One metric per clip (columns) and method (rows), Markdown."""
  results = report['results']
  clips = list(next(iter(results.values()))['clips'])
  rows = ['| method | ' + ' | '.join(clips) + ' |',
          '| --- |' + ' ---: |' * len(clips)]
  for name, result in results.items():
    rows.append(f'| {name} | ' + ' | '.join(
        _fmt(result['clips'][c]['mean'][metric] if metric in scores.FRAME_METRICS
             else result['clips'][c][metric], digits) for c in clips) + ' |')
  return '\n'.join(rows) + '\n'


def calibration_markdown(report: dict[str, Any], pictures_prefix: str = '') -> str:
  """The uncertainty head's calibration (calibration.py), one row per method that
  has the head, and its pictures; '' when no method has one."""
  rows = [(name, r['calibration']) for name, r in report['results'].items()
          if 'calibration' in r]
  if not rows:
    return ''
  parts = ['## Uncertainty calibration\n',
           "Predicted error scale b against each pixel's actual error |restored - GT| "
           '(mean over RGB, grey levels, the same border cropped), on up to '
           f'{calibration.SAMPLES_PER_FRAME:,} sampled pixels of every scored frame. '
           'Removing the 10% most uncertain pixels should lower the error of the rest '
           'well below random removal (which leaves the mean unchanged); AUSE is the '
           'area between the normalised sparsification curves of the head and the oracle '
           '(0 is a perfect ranking).\n',
           '| method | Spearman | AUSE | MAE | MAE, 10% most uncertain removed | '
           '10% random removed | 10% worst removed (oracle) | mean b |',
           '| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |']
  for name, c in rows:
    at = c['mae_removed_10']
    parts.append(f'| {name} | {_fmt(c["spearman"], 3)} | {_fmt(c["ause"], 3)} | '
                 f'{_fmt(c["mae"], 2)} | {_fmt(at["uncertainty"], 2)} | '
                 f'{_fmt(at["random"], 2)} | {_fmt(at["oracle"], 2)} | '
                 f'{_fmt(c["mean_predicted"], 2)} |')
  parts.append('')
  for pic in report.get('calibration_pictures', []):
    what = ('sparsification curves' if pic['kind'] == 'sparsification'
            else f'{pic["clip"]} {pic["frame"]}: restored | actual error | predicted error')
    parts.append(f'![{pic["method"]}: {what}]({pictures_prefix}{pic["file"]})\n')
  return '\n'.join(parts) + '\n'


def protocol_markdown(report: dict[str, Any]) -> str:
  """The protocol of metrics.json as a Markdown list."""
  p = report['protocol']
  return '\n'.join([
      f'- Frames: {p["frames"]} (`--protocol={p["name"]}`): {p["num_frames_included"]} '
      f'frames of {p["num_clips"]} clips scored, {p["num_frames_dropped"]} dropped'
      + (f'; clips cut to their first {p["max_frames"]} frames' if p['max_frames'] else '')
      + '.',
      f'- PSNR / SSIM on RGB and on Y in [0, 255] of the 8-bit outputs, x{p["scale"]}, '
      f'{p["crop_border"]} pixels of border cropped; averaged {p["averaging"]}.',
      f'- SSIM: {p["ssim"]}.',
      f'- LPIPS: {p["lpips"]}.',
      f'- tOF: {p["tof"]} (lower is better). Flicker: {p["flicker"]} (lower is better).',
      f'- Restoration: {p["temporal_window"]}; {p["tile"]}'
      + (' LQ pixels per tile' if p['tile'] != 'whole frames' else '') + '.',
      '- ms / frame: restoration alone (not scoring or writing), the first frame of each '
      'clip left out (it pays for compilation), on the machine above.',
  ]) + '\n'


def results_markdown(report: dict[str, Any], pictures_prefix: str = '') -> str:
  """The results page of one evaluation: protocol, tables, pictures."""
  parts = ['# Evaluation results\n',
           f'{report["date"]}, {report["machine"]}.\n']
  if report.get('sources'):
    parts.append('Inputs: ' + ', '.join(f'{k} `{v}`' for k, v in report['sources'].items())
                 + '.\n')
  parts += ['## Protocol\n', protocol_markdown(report),
            '## Mean over clips\n', summary_table(report),
            '## PSNR (dB) per clip\n', clip_table(report, 'psnr', 2),
            '## SSIM per clip\n', clip_table(report, 'ssim', 4),
            calibration_markdown(report, pictures_prefix),
            '## Methods\n']
  for name, info in report['methods'].items():
    parts.append(f'- **{name}**: {_describe(info)}')
  parts.append('')
  if report['pictures']:
    parts.append('## Pictures\n')
    parts.append('Columns: ' + ' | '.join(report['pictures'][0]['columns']) + '; below each '
                 f'frame, its most detailed region (red box) zoomed {pictures.ZOOM}x.\n')
    for pic in report['pictures']:
      parts.append(f'![{pic["clip"]} {pic["frame"]}]({pictures_prefix}{pic["file"]})\n')
  return '\n'.join(parts)


def _describe(info: dict[str, Any]) -> str:
  """One method of metrics.json in words."""
  if info['kind'] == 'bicubic':
    return f'bicubic upsampling of the LQ frame ({info["interpolation"]})'
  stages = []
  for s in info['stages']:
    where = s.get('bundle') or s.get('workdir')
    notes = ([] if s['use_alignment'] else ['no alignment']) + (
        [] if s['use_attention'] else ['no attention']) + (
        ['uncertainty head'] if s.get('uncertainty') else [])
    stages.append(f'`{where}` ({s["variant"]} x{s["scale"]}, K={s["num_neighbors"]}'
                  + ''.join(f', {f}' for f in notes) + f', step {s["step"]})')
  text = ' then '.join(stages)
  if info['bicubic_after'] > 1:
    text += f', then bicubic x{info["bicubic_after"]}'
  return text
