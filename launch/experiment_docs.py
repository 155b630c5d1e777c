"""The write-up of launch/experiment.py: docs/baselines.md from its outputs.

Every number comes from OUT/validation/METHOD (validate's validation.json, and
evaluate's metrics.json per setting for tOF) and OUT/line_scores.json. The verdicts
follow from the joint model's seed-to-seed spread.
"""

from __future__ import annotations

import json
from pathlib import Path
import statistics
import time
from typing import Any

from clarity_jax import files

SETTINGS = ('mild', 'moderate', 'heavy')
JOINT, TWIN = 'joint', 'joint_seed1'
# (claim, the method the joint model is compared with)
CLAIMS = (
    ('Joint beats SR-only', 'sr_only'),
    ('Joint beats deblur-only + bicubic', 'deblur_only'),
    ('Joint beats the two-stage cascade', 'two_stage'),
    ('Multi-frame fusion (K=2) beats single-frame', 'single_frame'),
    ('Alignment helps', 'no_alignment'),
    ('Attention fusion helps', 'no_attention'),
)
def load(out: Path) -> dict[str, Any]:
  """{'gain': {setting: {method: dB}}, 'ssim': ..., 'tof': ..., 'clips': {setting:
  {method: {clip: dB}}}, 'lines': {method: score}}"""
  table: dict[str, Any] = {'gain': {}, 'ssim': {}, 'tof': {}, 'clips': {}}
  for folder in sorted((out / 'validation').iterdir()):
    validation = json.loads((folder / 'validation.json').read_text())
    for setting in SETTINGS:
      for method, rows in validation[setting].items():
        table['gain'].setdefault(setting, {})[method] = rows['mean']['gain_psnr']
        table['ssim'].setdefault(setting, {})[method] = rows['mean']['gain_ssim']
        table['clips'].setdefault(setting, {})[method] = {
            clip: r['gain_psnr'] for clip, r in rows.items() if clip != 'mean'}
      metrics = json.loads((folder / setting / 'metrics.json').read_text())
      for method, result in metrics['results'].items():
        tof = [c['tof'] for c in result['clips'].values() if c.get('tof') is not None]
        if tof:
          table['tof'].setdefault(setting, {})[method] = statistics.mean(tof)
  table['lines'] = json.loads((out / 'line_scores.json').read_text())
  return table


def spread(table: dict[str, Any], setting: str) -> float:
  """|gain(seed 0) - gain(seed 1)| of the joint model at a setting."""
  gains = table['gain'][setting]
  return abs(gains[JOINT] - gains[TWIN])


def verdict(difference: float, spread_db: float) -> str:
  """A difference beyond the seed spread either way decides; inside it, nothing does."""
  if difference > spread_db:
    return 'holds'
  if difference < -spread_db:
    return 'refuted'
  return 'inconclusive'


def overall(verdicts: dict[str, str]) -> str:
  kinds = set(verdicts.values())
  if len(kinds) == 1:
    return kinds.pop()
  return 'mixed: ' + ', '.join(f'{v} at {s}' for s, v in verdicts.items())


def claim_lines(table: dict[str, Any], labels: dict[str, str]) -> list[str]:
  lines = []
  for claim, other in CLAIMS:
    if other not in table['gain'][SETTINGS[0]]:
      continue
    diffs = {s: table['gain'][s][JOINT] - table['gain'][s][other] for s in SETTINGS}
    verdicts = {s: verdict(d, spread(table, s)) for s, d in diffs.items()}
    detail = ', '.join(f'{s} {d:+.2f} dB' for s, d in diffs.items())
    lines.append(f'- **{claim}: {overall(verdicts)}.** Joint minus {labels[other]}, '
                 f'PSNR gain: {detail}.')
    if other in ('single_frame', 'no_alignment') and table['tof']:
      # Less flicker and ghosting: a lower tOF, judged against its own seed spread.
      tof = table['tof']
      diffs = {s: tof[s][other] - tof[s][JOINT] for s in SETTINGS}
      verdicts = {s: verdict(d, abs(tof[s][JOINT] - tof[s][TWIN])) for s, d in diffs.items()}
      lines.append(f'  - *... and is steadier over time (lower tOF): {overall(verdicts)}.* '
                   'tOF joint vs ' + labels[other] + ': ' + ', '.join(
                       f'{s} {tof[s][JOINT]:.3f} vs {tof[s][other]:.3f} (seed spread '
                       f'{abs(tof[s][JOINT] - tof[s][TWIN]):.3f})' for s in SETTINGS) + '.')
  lines += line_lines(table, labels)
  return lines


def line_lines(table: dict[str, Any], labels: dict[str, str]) -> list[str]:
  """What the line-artifact scores say: which methods draw lines (score over 2)."""
  scores = table['lines']
  drawing = sorted((m for m, v in scores.items() if v > 2), key=scores.get)
  if not drawing:
    return ['- No method draws thin axis-aligned lines (every line score is under 2).']
  clean = sorted((m for m in scores if m not in drawing), key=scores.get)
  return ['- **Line artifacts:** ' + ', '.join(
      f'{labels.get(m, m)} ({scores[m]:.1f})' for m in drawing) + ' draw thin axis-aligned '
      'lines on texture (score over 2); ' + (', '.join(
          f'{labels.get(m, m)} ({scores[m]:.2f})' for m in clean) + ' do not.' if clean
      else 'none is clean.')]


def _summary_table(table: dict[str, Any], labels: dict[str, str]) -> list[str]:
  methods = list(table['gain']['moderate'])
  head = '| method | ' + ' | '.join(f'{s} dB' for s in SETTINGS) + ' | ' + ' | '.join(
      f'{s} SSIM' for s in SETTINGS) + ' | tOF (moderate) | line score |'
  rows = [head, '| --- |' + ' ---: |' * (2 * len(SETTINGS) + 2)]
  tof = table['tof'].get('moderate', {})
  for m in methods:
    rows.append(f'| {labels.get(m, m)} | '
                + ' | '.join(f'{table["gain"][s][m]:+.2f}' for s in SETTINGS) + ' | '
                + ' | '.join(f'{table["ssim"][s][m]:+.4f}' for s in SETTINGS)
                + f' | {tof.get(m, float("nan")):.3f} | {table["lines"].get(m, float("nan")):.2f} |')
  if 'bicubic' in tof:
    rows.append(f'| bicubic (reference) | 0 | 0 | 0 | 0 | 0 | 0 | {tof["bicubic"]:.3f} | 1 |')
  return rows


def markdown(table: dict[str, Any], *, labels: dict[str, str], command: str, steps: int,
             date: str) -> str:
  clips = sorted(next(iter(table['clips']['moderate'].values())))
  lines = [
      "# The paper's claims on real footage",
      '',
      f'Written by `{command}` (launch/experiment.py) on {date}, on a 2-core CPU VM.',
      '',
      '## Protocol',
      '',
      f'- **Training:** every network on the shipped recipe (configs/shipped.py: real '
      f'footage, 8 windows of 32x32 LQ pixels per step, AdamW, EMA weights) for '
      f'{steps} steps; each baseline differs by its config file only '
      '(`configs/NAME.py:shipped`). The joint model is trained twice (seeds 0 and 1).',
      f'- **Scoring:** `python -m clarity_jax.validate` on the held-out real clips '
      f'({", ".join(clips)}): mild, moderate and heavy degradations of eq. (1), PSNR and '
      'SSIM gains over bicubic (mean over clips), tOF (temporal consistency, lower is '
      "better), and the line-artifact score on scikit-image's grass "
      '(evaluation/artifacts.py: about 1 is clean, 2 and more draws lines).',
      '- **Verdicts:** a difference counts only beyond the joint model\'s seed-to-seed '
      'spread at that setting ('
      + ', '.join(f'{s} {spread(table, s):.2f} dB' for s in SETTINGS)
      + '); within it the claim is inconclusive.',
      '',
      '## Results (gains over bicubic)',
      '',
      *_summary_table(table, labels),
      '',
      '## Verdicts',
      '',
      *claim_lines(table, labels),
      '',
      '## PSNR gain per clip (dB)',
      '',
      '| method | setting | ' + ' | '.join(clips) + ' |',
      '| --- | --- |' + ' ---: |' * len(clips),
      *[f'| {labels.get(m, m)} | {s} | '
        + ' | '.join(f'{table["clips"][s][m][c]:+.2f}' for c in clips) + ' |'
        for m in table['clips']['moderate'] for s in SETTINGS],
      '',
  ]
  return '\n'.join(lines)


def write_docs(out: Path, docs: Path, *, labels: dict[str, str], command: str,
               steps: int) -> None:
  """docs/baselines.md from the experiment's outputs under `out`, replaced atomically."""
  table = load(out)
  files.write_text(docs, markdown(table, labels=labels, command=command, steps=steps,
                                  date=time.strftime('%Y-%m-%d')))
