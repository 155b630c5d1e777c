"""The experiment behind docs/baselines.md: the joint model against its baselines.

  launch/experiment.sh [--steps=N] [--variant=small] [--output=runs/experiment]

One command, every stage a program of the project run as a user would run it:

  1. held-out set: the validation photographs (never trained on) rendered as whole
     clips by the synthetic camera, plus the first frames of the videos in
     --video_dir when given (area-downscaled to a CPU-sized HR frame); then
     `clarity_jax.degrade --scale=4 --seed=0` (blur, noise, JPEG, H.264);
  2. training, same data, steps, batch and crop for all: the joint model
     (configs/default.py) and the baselines (configs/sr_only.py, deblur_only.py,
     single_frame.py, no_alignment.py, no_attention.py);
  3. `clarity_jax.export` of each; 4. one `clarity_jax.evaluate` run scoring them all
     (and bicubic, deblur-only + bicubic and the two-stage deblur -> SR cascade);
  5. docs/baselines.md (launch/experiment_docs.py): the tables, the protocol, the
     budget, the machine, the date, a check of each claim of the paper against the
     numbers, and the pictures (copied to docs/baselines/).

Stages whose outputs exist are reused (training resumes from its checkpoints), so
an interrupted experiment is finished by running the same command again.
"""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path
import shutil
import subprocess
import sys
import time
from typing import Any, Sequence
import warnings
import zlib

from absl import app
from absl import flags
from absl import logging
import cv2
import numpy as np

from clarity_jax import config as config_files
from clarity_jax import errors
from clarity_jax import files
from clarity_jax.cli import common
from clarity_jax.media import frames as frames_lib
from clarity_jax.data import source_base
from clarity_jax.media import temporal
from clarity_jax.data import synthetic
from clarity_jax.media import readers
from clarity_jax.evaluation import report as report_lib
import experiment_docs  # launch/experiment_docs.py, beside this file

REPO = Path(__file__).resolve().parent.parent


@dataclasses.dataclass(frozen=True)
class Model:
  """One trained network of the experiment: its config file, table label and any
  flags of its own."""
  key: str
  config: str
  label: str
  flags: tuple[str, ...] = ()


MODELS = (
    Model('joint', 'default.py', 'joint (ClarityNetSR)'),
    Model('sr_only', 'sr_only.py', 'SR-only'),
    Model('deblur_only', 'deblur_only.py', 'deblur-only + bicubic'),
    Model('single_frame', 'single_frame.py', 'single-frame K=0'),
    Model('no_alignment', 'no_alignment.py', 'no alignment'),
    Model('no_attention', 'no_attention.py', 'no attention'),
    # The joint model again with another seed (initialisation and data order): how
    # far apart two runs of one method land, i.e. which differences mean anything.
    Model('joint_seed1', 'default.py', 'joint (seed 1)', ('--config.seed=1',)),
)
TWO_STAGE = 'two-stage deblur -> SR'
SEED_TWIN = 'joint (seed 1)'


# ------------------------------------------------------------- held-out set


def render_clip(photo: np.ndarray, num_frames: int, size: int,
                rng: np.random.Generator) -> np.ndarray:
  """num_frames consecutive frames [T, size, size, 3] of one photograph seen by the
  synthetic camera of data/synthetic.py (SyntheticSource).

  The source serves windows centred on a random frame and reflected at the clip's
  edges; a window of 2T - 1 frames of a T-frame clip holds all T frames in order
  wherever its centre falls. The centre is recovered from the window itself
  (frames that reflection repeats are identical, the others differ), so only the
  source's documented behaviour is relied on.
  """
  n = num_frames
  spec = source_base.WindowSpec(num_frames=2 * n - 1, crop=size)
  with warnings.catch_warnings():
    warnings.simplefilter('ignore', source_base.ShortClipWarning)
    source = synthetic.SyntheticSource({'photo': photo}, spec, frames_per_clip=n)
  window = source.sample(rng)
  offsets = np.arange(2 * n - 1) - (n - 1)
  for centre in range(n):
    index = temporal.reflect_indices(centre + offsets, n)
    consistent = all(
        np.array_equal(window[p], window[q]) == (index[p] == index[q])
        for p in range(len(index)) for q in range(p + 1, len(index)))
    if consistent:
      start = (n - 1) - centre  # window position of frame 0
      return window[start:start + n]
  raise RuntimeError('synthetic window does not match any centre frame: has '
                     'SyntheticSource changed how it reflects windows?')


def write_photo_clips(hr_root: Path, num_frames: int, size: int, seed: int) -> list[str]:
  """The validation photographs as clips HR_ROOT/<photo>/00000000.png..."""
  names = []
  for name in synthetic.VALIDATION_PHOTOS:
    rng = np.random.default_rng([seed, zlib.crc32(name.encode())])
    clip = render_clip(synthetic.load_photo(name), num_frames, size, rng)
    _write_clip(hr_root / name, clip)
    names.append(name)
  return names


def write_video_clips(hr_root: Path, video_dir: Path, num_frames: int,
                      size: tuple[int, int], max_videos: int) -> list[str]:
  """The first frames of each video, area-downscaled to size = (w, h): sharp HR."""
  names = []
  videos = sorted(p for p in video_dir.iterdir()
                  if p.suffix.lower() in files.VIDEO_EXTENSIONS)[:max_videos]
  for path in videos:
    clip = []
    for frame in readers.VideoReader(path):
      # INTER_AREA averages whole source pixels: a 4x smaller frame loses codec noise
      # and is as sharp as the footage allows, i.e. a fair ground truth.
      clip.append(cv2.resize(frame, size, interpolation=cv2.INTER_AREA))
      if len(clip) == num_frames:
        break
    name = f'video_{path.stem}'
    _write_clip(hr_root / name, np.stack(clip))
    names.append(name)
  return names


def _write_clip(folder: Path, clip: np.ndarray) -> None:
  folder.mkdir(parents=True, exist_ok=True)
  for t, frame in enumerate(clip):
    frames_lib.write_image(folder / f'{t:08d}.png', frame)


def build_heldout(root: Path, *, num_frames: int, size: int, video_dir: Path | None,
                  video_size: tuple[int, int], max_videos: int, scale: int,
                  seed: int = 0) -> dict[str, Any]:
  """root/hr and root/lq (clarity_jax.degrade of root/hr); reused when complete.

  video_dir: videos whose first frames make real clips; None for none.
  """
  record_path = root / 'heldout.json'
  if record_path.is_file() and (root / 'lq' / 'degradation.json').is_file():
    return json.loads(record_path.read_text())
  shutil.rmtree(root, ignore_errors=True)
  hr = root / 'hr'
  photos = write_photo_clips(hr, num_frames, size, seed)
  videos = (write_video_clips(hr, video_dir, num_frames, video_size, max_videos)
            if video_dir is not None and max_videos else [])
  _run('degrade', [sys.executable, '-m', 'clarity_jax.degrade', f'--input={hr}',
                   f'--output={root / "lq"}', f'--scale={scale}', f'--seed={seed}'])
  record = {'photos': photos, 'videos': videos, 'num_frames': num_frames,
            'photo_size': [size, size], 'video_size': [video_size[1], video_size[0]],
            'scale': scale, 'seed': seed,
            'video_dir': str(video_dir) if videos else None}
  files.write_text(record_path, json.dumps(record, indent=1) + '\n')
  return record


# ------------------------------------------------------ training and export


def _run(what: str, command: Sequence[str]) -> float:
  """Runs one stage as a program; its output goes to the terminal. Seconds taken."""
  logging.info('%s: %s', what, ' '.join(command))
  print(f'[experiment] {what}: {" ".join(command)}', flush=True)
  start = time.perf_counter()
  env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL=os.environ.get('TF_CPP_MIN_LOG_LEVEL', '2'))
  result = subprocess.run(list(command), cwd=REPO, env=env)
  if result.returncode:
    raise RuntimeError(f'{what} failed with exit status {result.returncode}: '
                       f'{" ".join(command)}')
  return time.perf_counter() - start


class Stages:
  """OUT/stages.json: the command and wall time of every finished stage.

  A re-run skips a stage whose command is unchanged and whose output exists, and
  the write-up still reports the time the stage took when it ran.
  """

  def __init__(self, path: Path):
    self.path = path
    self.done = json.loads(path.read_text()) if path.is_file() else {}

  def run(self, name: str, command: list[str], output: Path | None = None) -> float:
    record = self.done.get(name)
    if (output is not None and output.exists() and record is not None
        and record['command'] == command):
      print(f'[experiment] {name}: done earlier ({record["seconds"]:.0f} s), reused',
            flush=True)
      return record['seconds']
    seconds = _run(name, command)
    self.done[name] = {'command': command, 'seconds': seconds}
    files.write_text(self.path, json.dumps(self.done, indent=1) + '\n')
    return seconds


def train_command(model: Model, workdir: Path, budget: dict[str, Any]) -> list[str]:
  """`clarity_jax.main` for one model; budget values of None keep runlocal's."""
  arg = 'runlocal' + (f',variant={budget["variant"]}' if budget['variant'] else '')
  command = [sys.executable, '-m', 'clarity_jax.main',
             f'--config={REPO / "configs" / model.config}:{arg}', f'--workdir={workdir}']
  steps = budget['steps']
  if steps is not None:
    command += [f'--config.num_train_steps={steps}', f'--config.eval_every_steps={steps}',
                f'--config.checkpoint_every_steps={min(100, steps)}',
                f'--config.log_every_steps={min(50, steps)}']
  for field in ('batch_size', 'data.crop_size', 'learning_rate'):
    if budget.get(field) is not None:
      command.append(f'--config.{field}={budget[field]}')
  return command + list(model.flags)


def resolved_budget(budget: dict[str, Any]) -> dict[str, Any]:
  """The values the networks actually train with: runlocal's, then the overrides."""
  arg = 'runlocal' + (f',variant={budget["variant"]}' if budget['variant'] else '')
  config = config_files.get_config(REPO / 'configs' / 'default.py', arg)
  return {'variant': config.model.variant, 'steps': budget['steps'] or config.num_train_steps,
          'batch_size': budget['batch_size'] or config.batch_size,
          'crop_size': budget['data.crop_size'] or config.data.crop_size,
          'learning_rate': budget['learning_rate'] or config.learning_rate,
          'warmup_steps': config.warmup_steps, 'num_neighbors': config.num_neighbors,
          'scale': config.scale}


# ------------------------------------------------------------- the write-up


def _delta(results: dict[str, Any], a: str, b: str, metric: str) -> float | None:
  x, y = results[a]['mean'][metric], results[b]['mean'][metric]
  return None if x is None or y is None else x - y


def claims(report: dict[str, Any]) -> list[str]:
  """Each claim of the paper, checked against this run's mean PSNR / SSIM / tOF.

  A claim holds when the joint model is ahead on both PSNR and SSIM; a lead no
  larger than the gap between the two seeds of the joint model is called
  inconclusive.
  """
  r = report['results']
  joint = MODELS[0].label
  spread = None
  if SEED_TWIN in r:
    spread = (abs(_delta(r, joint, SEED_TWIN, 'psnr')),
              abs(_delta(r, joint, SEED_TWIN, 'ssim')))
  lines = []
  if spread is not None:
    lines.append(f'- Seed-to-seed spread of the joint model: {spread[0]:.2f} dB PSNR, '
                 f'{spread[1]:.4f} SSIM (seed 0 vs seed 1, same budget); smaller '
                 'differences below are not conclusive.')

  def compare(claim: str, other: str, lower_better: str | None = None) -> None:
    if other not in r:
      return
    d_psnr, d_ssim = _delta(r, joint, other, 'psnr'), _delta(r, joint, other, 'ssim')
    if d_psnr > 0 and d_ssim > 0:
      verdict = 'holds'
      if spread is not None and (d_psnr <= spread[0] or d_ssim <= spread[1]):
        verdict = 'holds, but within the seed spread (inconclusive)'
    else:
      verdict = 'does not hold'
    text = (f'- {claim}: joint vs {other}: {d_psnr:+.2f} dB PSNR, {d_ssim:+.4f} SSIM'
            f' -> **{verdict}** at this budget')
    if lower_better:
      d = _delta(r, joint, other, lower_better)
      if d is not None:
        text += f'; {lower_better} {d:+.3f} ({"lower" if d < 0 else "not lower"} for joint)'
    lines.append(text + '.')

  compare('Joint beats bicubic', 'bicubic')
  compare('Joint beats SR-only', 'SR-only')
  compare('Joint beats deblur-only + bicubic', 'deblur-only + bicubic')
  compare('Joint beats the two-stage cascade', TWO_STAGE)
  compare('Multi-frame (K=2) adds detail and reduces ghosting over single-frame',
          'single-frame K=0', lower_better='tof')
  compare('Alignment helps', 'no alignment', lower_better='tof')
  compare('Attention fusion helps', 'no attention')
  clips = r[joint].get('clips', {})
  if 'bicubic' in r and clips:
    worse = [(c, v['mean']['psnr'] - r['bicubic']['clips'][c]['mean']['psnr'])
             for c, v in clips.items()]
    worse = [(c, d) for c, d in worse if d < 0]
    if worse:
      lines.append('- Clips where the joint model is below bicubic in PSNR: '
                   + ', '.join(f'{c} ({d:+.2f} dB)' for c, d in worse) + '.')
  return lines


# ---------------------------------------------------------------------- CLI

def define_flags() -> None:
  """The CLI's flags, defined only when run as a program (importing this module, as
  tests do, must not claim --output in absl's global registry)."""
  flags.DEFINE_string('output', str(REPO / 'runs' / 'experiment'),
                      'Held-out set, workdirs, bundles and evaluation go here.')
  flags.DEFINE_string('docs', str(REPO / 'docs' / 'baselines.md'),
                      'The write-up (pictures beside it, in docs/baselines/).')
  flags.DEFINE_integer('steps', None, 'Training steps of every network (default: '
                       'runlocal).', lower_bound=1)
  flags.DEFINE_string('variant', None, 'Model variant (default: the runlocal one).')
  flags.DEFINE_integer('batch_size', None, 'Global batch (default: runlocal).')
  flags.DEFINE_integer('crop_size', None, 'LQ crop side (default: runlocal).')
  flags.DEFINE_float('learning_rate', None, 'Peak learning rate (default: runlocal).')
  flags.DEFINE_integer('frames', 7, 'Frames per held-out clip.', lower_bound=3)
  flags.DEFINE_integer('hr_size', 192, 'HR side of the photograph clips (a multiple of 4).',
                       lower_bound=32)
  flags.DEFINE_list('video_size', ['320', '180'], 'HR width,height of the video clips '
                    '(multiples of 4).')
  flags.DEFINE_string('video_dir', '', 'Folder of videos whose first frames become real '
                      'held-out clips (default: none).')
  flags.DEFINE_integer('max_videos', 5, 'Real clips from --video_dir at most (0: none).',
                       lower_bound=0)
  flags.DEFINE_integer('num_pictures', 4, 'Comparison pictures.', lower_bound=0)


@common.exit_on_error(RuntimeError)
def main(argv: list[str]) -> None:
  common.start(argv)
  f = flags.FLAGS
  out = Path(f.output).resolve()
  video_dir = Path(f.video_dir) if f.video_dir else None  # as given: the write-up names it
  if video_dir is not None and not video_dir.is_dir():
    raise errors.PathError(video_dir, 'no such folder (--video_dir)')
  command = 'launch/experiment.sh ' + ' '.join(
      a for a in sys.argv[1:] if not a.startswith(('--output', '--docs')))
  budget = {'variant': f.variant, 'steps': f.steps, 'batch_size': f.batch_size,
            'data.crop_size': f.crop_size, 'learning_rate': f.learning_rate}
  timings: dict[str, float] = {}
  start = time.perf_counter()
  heldout = build_heldout(out / 'heldout', num_frames=f.frames, size=f.hr_size,
                          video_dir=video_dir, video_size=tuple(int(v) for v in f.video_size),
                          max_videos=f.max_videos, scale=4)
  stages = Stages(out / 'stages.json')
  bundles = {}
  for model in MODELS:
    workdir = out / 'runs' / model.key
    bundles[model.key] = out / 'bundles' / model.key
    timings[f'train {model.key}'] = stages.run(
        f'train {model.key}', train_command(model, workdir, budget), workdir / 'checkpoints')
    stages.run(f'export {model.key}',
               [sys.executable, '-m', 'clarity_jax.export', f'--workdir={workdir}',
                f'--output={bundles[model.key]}'], bundles[model.key] / 'bundle.json')
  methods = [(str(bundles[m.key]), m.label) for m in MODELS]
  methods.insert(3, (f'{bundles["deblur_only"]}+{bundles["sr_only"]}', TWO_STAGE))
  eval_dir = out / 'evaluation'
  timings['evaluate'] = _run('evaluate', [
      sys.executable, '-m', 'clarity_jax.evaluate',
      '--bundle=' + ','.join(b for b, _ in methods),
      '--names=' + ','.join(n for _, n in methods),
      f'--lq={out / "heldout" / "lq"}', f'--gt={out / "heldout" / "hr"}',
      f'--output={eval_dir}', f'--num_pictures={f.num_pictures}', '--progress=false'])
  report = json.loads((eval_dir / report_lib.METRICS_FILE).read_text())
  experiment_docs.write_docs(report, eval_dir, Path(f.docs), budget=resolved_budget(budget),
                             heldout=heldout, timings=timings, command=command.strip(),
                             claims=claims(report))
  print(f'[experiment] {f.docs} written after {(time.perf_counter() - start) / 60:.1f} min',
        flush=True)


if __name__ == '__main__':
  define_flags()
  app.run(main)
