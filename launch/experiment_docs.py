"""The write-up of launch/experiment.py: docs/baselines.md and its pictures.

Everything in it comes from the evaluation's metrics.json (through the tables of
clarity_jax/evaluation/report.py), the budget, the held-out set and the times of
the stages; the claim checks are made by the experiment and passed in.
"""

from __future__ import annotations

from pathlib import Path
import shutil
from typing import Any, Sequence

from clarity_jax import files
from clarity_jax.evaluation import pictures as pictures_lib
from clarity_jax.evaluation import report as report_lib


def write_docs(report: dict[str, Any], eval_dir: Path, docs: Path, *, budget: dict[str, Any],
               heldout: dict[str, Any], timings: dict[str, float], command: str,
               claims: Sequence[str]) -> None:
  """docs/baselines.md and docs/baselines/*.png, each replaced atomically."""
  pictures = docs.with_suffix('')  # docs/baselines.md -> docs/baselines/
  tmp_pictures = files.temp_sibling(pictures)
  files.remove(tmp_pictures)
  tmp_pictures.mkdir(parents=True)
  try:
    for pic in report['pictures']:
      shutil.copy(eval_dir / pic['file'], tmp_pictures / Path(pic['file']).name)
    text = _markdown(report, f'{pictures.name}/', budget=budget, heldout=heldout,
                     timings=timings, command=command, claims=claims)
    files.replace_folder(tmp_pictures, pictures)
  finally:
    files.remove(tmp_pictures)
  files.write_text(docs, text)


def _markdown(report: dict[str, Any], prefix: str, *, budget: dict[str, Any],
              heldout: dict[str, Any], timings: dict[str, float], command: str,
              claims: Sequence[str]) -> str:
  """The page, pictures referenced as `prefix`<file name>."""
  report = dict(report, pictures=[dict(p, file=Path(p['file']).name) for p in report['pictures']])
  clip_frames = heldout['num_frames']
  total_train = sum(v for k, v in timings.items() if k.startswith('train'))
  lines = [
      '# Results: the joint model against its baselines',
      '',
      f'Written by `{command}` on {report["date"]}; machine: {report["machine"]}. '
      'Every number below comes from that run (metrics.json of the evaluation holds '
      'them per frame).',
      '',
      '## Budget',
      '',
      f'- Every network: ClarityNetSR `{budget["variant"]}` variant, {budget["steps"]} '
      f'training steps of batch {budget["batch_size"]} windows (LQ crops '
      f'{budget["crop_size"]}x{budget["crop_size"]}, K={budget["num_neighbors"]} unless the '
      f'baseline changes it), peak learning rate {budget["learning_rate"]:g} after '
      f'{budget["warmup_steps"]} warmup steps, the `runlocal` settings of '
      'configs/default.py otherwise (AdamW, cosine decay, no EMA); same data '
      '(skimage training photographs animated by the synthetic camera, degraded on the '
      'fly by eq. (1)), same seed. Baselines differ only in their config deltas.',
      f'- Training time: {total_train / 60:.1f} min in all ('
      + ', '.join(f'{k[6:]} {v / 60:.1f}' for k, v in timings.items()
                  if k.startswith('train')) + ' min); evaluation '
      f'{timings.get("evaluate", 0) / 60:.1f} min.',
      '- This is a CPU-sized budget: a few minutes per network instead of the days of '
      'GPU training behind the published numbers in docs/evaluation.md. It tests whether '
      'the claims show up early in training, not the final quality.',
      '',
      '## Held-out set',
      '',
      f'- {len(heldout["photos"])} clips rendered from the validation photographs '
      f'({", ".join(heldout["photos"])}: never seen in training) by the synthetic camera, '
      f'{clip_frames} frames of {heldout["photo_size"][1]}x{heldout["photo_size"][0]}.',
      (f'- {len(heldout["videos"])} real clips: the first {clip_frames} frames of '
       f'{", ".join(v[6:] for v in heldout["videos"])} from {heldout["video_dir"]}, '
       f'area-downscaled to {heldout["video_size"][1]}x{heldout["video_size"][0]}.'
       if heldout['videos'] else '- No real clips (no --video_dir given).'),
      f'- LQ: `python -m clarity_jax.degrade --scale={heldout["scale"]} '
      f'--seed={heldout["seed"]}` (blur, noise, JPEG and H.264 over each whole clip; the '
      'exact parameters are in its degradation.json).',
      '',
      '## Protocol',
      '',
      report_lib.protocol_markdown(report),
      '## Mean over clips',
      '',
      report_lib.summary_table(report),
      '## What the numbers say about the claims',
      '',
      *claims,
      '',
      '## PSNR (dB) per clip',
      '',
      report_lib.clip_table(report, 'psnr', 2),
      '## SSIM per clip',
      '',
      report_lib.clip_table(report, 'ssim', 4),
      '## tOF per clip (lower is better)',
      '',
      report_lib.clip_table(report, 'tof', 3),
      '## Pictures',
      '',
      'Columns: ' + ' | '.join(report['pictures'][0]['columns'] if report['pictures'] else [])
      + f'; below each frame, its most detailed region (red box, largest ground-truth '
      f'gradient energy) zoomed {pictures_lib.ZOOM}x, nearest neighbour.',
      '',
      *[f'![{pic["clip"]} {pic["frame"]}]({prefix}{pic["file"]})\n'
        for pic in report['pictures']],
      '## Reproduce, and compare with the literature',
      '',
      f'- `{command}` (add `--steps=N` for another budget; stages already done are '
      'reused).',
      '- REDS4 with the published protocols: put clips 000, 011, 015, 020 of '
      '`train_blur_bicubic/X4` under LQ_ROOT and of `train_sharp` under GT_ROOT, then '
      '`python -m clarity_jax.evaluate --bundle=BUNDLE --lq=LQ_ROOT --gt=GT_ROOT '
      '--output=DIR --protocol=basicsr` (all frames: EDVR, BasicVSR++) and again with '
      '`--protocol=fmanet` (first and last frame dropped: FMA-Net); RGB figures go '
      'beside the published numbers in docs/evaluation.md.',
      '',
  ]
  return '\n'.join(lines).replace('\n\n\n', '\n\n')
