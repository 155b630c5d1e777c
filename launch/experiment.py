"""The experiment behind docs/baselines.md: the paper's claims on real footage.

  launch/experiment.sh --clips=TRAINING_FOOTAGE --heldout=VIDEOS [--steps=2000] \\
      [--output=runs/experiment] [--docs=docs/baselines.md]

Every stage is a program of the project, run as a user runs it:

  1. training on --clips with the shipped recipe (configs/shipped.py) and the same
     budget: the joint model twice (seeds 0 and 1: the spread that tells which
     differences mean anything), the baselines of configs/ (SR-only, deblur-only,
     single-frame, no alignment, no attention, each `configs/NAME.py:shipped`);
  2. `clarity_jax.export` of each;
  3. `clarity_jax.validate` of each method on --heldout (real videos, three
     degradation settings), plus deblur-only + bicubic and the two-stage cascade
     deblur-only -> SR-only, and each method's line-artifact score;
  4. docs/baselines.md (launch/experiment_docs.py), a verdict per claim.

A stage whose output exists is reused (a training run resumes from its checkpoints),
so an interrupted experiment is finished by running the same command again.
"""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path
import subprocess
import sys
import time
from typing import Sequence

from absl import app
from absl import flags
import numpy as np
import skimage.data

from clarity_jax import errors
from clarity_jax import files
from clarity_jax.cli import common
from clarity_jax.evaluation import artifacts
from clarity_jax.evaluation import methods as methods_lib
import experiment_docs  # launch/experiment_docs.py, beside this file

REPO = Path(__file__).resolve().parent.parent


@dataclasses.dataclass(frozen=True)
class Network:
  """One trained network: its key (folder names), table label and config."""
  key: str
  label: str
  config: str  # configs/ file and its argument
  flags: tuple[str, ...] = ()


NETWORKS = (
    Network('joint', 'joint', 'shipped.py'),
    Network('joint_seed1', 'joint (seed 1)', 'shipped.py', ('--config.seed=1',)),
    Network('sr_only', 'SR-only', 'sr_only.py:shipped'),
    Network('deblur_only', 'deblur-only + bicubic', 'deblur_only.py:shipped'),
    Network('single_frame', 'single-frame K=0', 'single_frame.py:shipped'),
    Network('no_alignment', 'no alignment', 'no_alignment.py:shipped'),
    Network('no_attention', 'no attention', 'no_attention.py:shipped'),
)
# Methods scored: each network's bundle (a x1 bundle on x4 data is followed by
# bicubic), and the cascade A+B.
TWO_STAGE = ('two_stage', 'two-stage deblur -> SR', ('deblur_only', 'sr_only'))
LABELS = {n.key: n.label for n in NETWORKS} | {TWO_STAGE[0]: TWO_STAGE[1]}


def _run(what: str, command: Sequence[str], log: Path | None = None) -> float:
  """Runs one stage as a program (its output to `log`, or the terminal); seconds."""
  print(f'[experiment] {what}: {" ".join(command)}', flush=True)
  start = time.perf_counter()
  env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL=os.environ.get('TF_CPP_MIN_LOG_LEVEL', '2'))
  if log is None:
    result = subprocess.run(list(command), cwd=REPO, env=env)
  else:
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, 'a') as out:
      result = subprocess.run(list(command), cwd=REPO, env=env, stdout=out,
                              stderr=subprocess.STDOUT)
  if result.returncode:
    raise RuntimeError(f'{what} failed with exit status {result.returncode}'
                       + (f' (its output: {log})' if log else '') + f': {" ".join(command)}')
  return time.perf_counter() - start


def train_command(network: Network, workdir: Path, clips: str, heldout: str, steps: int
                  ) -> list[str]:
  """`clarity_jax.main` of one network: its config on the shipped recipe, the budget."""
  return [sys.executable, '-m', 'clarity_jax.main',
          f'--config={REPO / "configs" / network.config}', f'--workdir={workdir}',
          f'--config.data.path={clips}', f'--config.data.val_path={heldout}',
          f'--config.num_train_steps={steps}', '--config.data.photo_share=0.3',
          *network.flags]


def method_bundles(bundles: Path) -> dict[str, str]:
  """key -> the --bundle of every method scored."""
  out = {n.key: str(bundles / n.key) for n in NETWORKS}
  out[TWO_STAGE[0]] = '+'.join(str(bundles / k) for k in TWO_STAGE[2])
  return out


def line_scores(specs: dict[str, str]) -> dict[str, float]:
  """Each method's line-artifact score (evaluation/artifacts.py) on scikit-image's
  grass, a static clip: about 1 for a restorer without axis-aligned lines."""
  grass = skimage.data.grass()[:256, :256].astype(np.float32) / 255.0
  grass = np.repeat(grass[..., None], 3, axis=-1)
  scores = {}
  for key, spec in specs.items():
    method = methods_lib.load_method(spec, 4, name=key)
    frames = 7  # enough for any K of these networks; the middle one is scored
    restore = lambda lq, m=method: list(m.enhance([lq] * frames))[frames // 2]
    scores[key] = artifacts.line_artifact_score(restore, grass, 4)
  return scores


def define_flags() -> None:
  """The CLI's flags, defined only when run as a program (importing this module, as
  tests do, must not claim --output in absl's global registry)."""
  flags.DEFINE_list('clips', None, 'Training footage: videos and frame folders.')
  flags.DEFINE_list('heldout', None, 'Held-out videos that validate scores on.')
  flags.DEFINE_integer('steps', 2000, 'Training steps of each window network.', lower_bound=1)
  flags.DEFINE_string('output', str(REPO / 'runs' / 'experiment'),
                      'Workdirs, bundles and validations go here.')
  flags.DEFINE_string('docs', str(REPO / 'docs' / 'baselines.md'), 'The write-up.')
  flags.mark_flags_as_required(['clips', 'heldout'])


@common.exit_on_error(RuntimeError)
def main(argv: list[str]) -> None:
  common.start(argv)
  f = flags.FLAGS
  for path in f.clips + f.heldout:
    if not os.path.exists(path):
      raise errors.PathError(path, 'no such file or folder (--clips, --heldout)')
  out = Path(f.output).resolve()
  clips, heldout = ','.join(f.clips), ','.join(f.heldout)
  start = time.perf_counter()
  for network in NETWORKS:
    bundle = out / 'bundles' / network.key
    if (bundle / 'bundle.json').is_file():
      continue
    workdir, log = out / 'runs' / network.key, out / 'logs' / f'{network.key}.log'
    _run(f'train {network.key}', train_command(network, workdir, clips, heldout, f.steps),
         log)
    _run(f'export {network.key}', [sys.executable, '-m', 'clarity_jax.export',
                                   f'--workdir={workdir}', f'--output={bundle}'], log)
  specs = method_bundles(out / 'bundles')
  for key, spec in specs.items():
    validation = out / 'validation' / key
    if not (validation / 'validation.json').is_file():
      _run(f'validate {key}', [sys.executable, '-m', 'clarity_jax.validate',
                               f'--clips={heldout}', f'--bundle={spec}', f'--names={key}',
                               '--noprogress', f'--output={validation}'],
           out / 'logs' / f'validate_{key}.log')
  lines_path = out / 'line_scores.json'
  if not lines_path.is_file():
    files.write_text(lines_path, json.dumps(line_scores(specs), indent=1) + '\n')
  command = ('launch/experiment.sh --clips=CLIPS --heldout=VIDEOS'
             + (f' --steps={f.steps}' if f.steps != 2000 else ''))
  experiment_docs.write_docs(out, Path(f.docs), labels=LABELS, command=command,
                             steps=f.steps)
  print(f'[experiment] {f.docs} written after {(time.perf_counter() - start) / 60:.1f} min',
        flush=True)


if __name__ == '__main__':
  define_flags()
  app.run(main)
