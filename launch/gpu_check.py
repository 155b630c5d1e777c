"""Everything a GPU run should measure, in one command with a time budget.

  python launch/gpu_check.py --out=DIR [--budget_s=510] [--video_dir=DIR]

(launch/gpu_check.sh installs carried wheels first.) Writes, under --out:
  benchmarks.json   device, measured matmul peaks, and for every variant and dtype
                    the train step (synthetic batches made on the device) and
                    inference at 180x320 -> 720x1280: time, windows or frames/s,
                    achieved TFLOP/s and its share of the measured peak;
  end_to_end.json   training as it runs (loader + step) with eq. (1) on the device
                    against on the host: windows/s and host CPU ms per window;
  train.log         the training run: --train_variant (base) with --train_config's
                    recipe (the shipped model's) on --train_data (default: the
                    clips of --video_dir) for what is left of the budget (eq. (1)
                    on the device, the thread loader: no TensorFlow needed),
                    stopped by SIGTERM (a preemption save) if it runs over;
                    --init_from continues a trained model (the shipped one's
                    successor: --train_variant=small
                    --init_from=clarity_jax/weights/claritynet_small_x4);
  bundle/           that run exported, parameter files under 16 MiB each;
  validation.md     with --val_clips (held out of --train_data): the validation
                    table (python -m clarity_jax.validate) of the new bundle and
                    of the shipped model;
  summary.json      what ran, for how long, and what was skipped and why.
Each stage gets a share of the budget and writes its file as soon as it is done,
so a run cut short still returns what it measured.
"""

from __future__ import annotations

import json
import os
import pathlib
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from typing import Any

from absl import app
from absl import flags

REPO = pathlib.Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:  # run from the checkout without installing it
  sys.path.insert(0, str(REPO))

_OUT = flags.DEFINE_string('out', None, 'Folder for the JSON figures, the log and the bundle.')
_BUDGET = flags.DEFINE_float('budget_s', 510.0, 'Seconds the whole check may take.')
_VIDEO_DIR = flags.DEFINE_string('video_dir', '', 'Sharp training clips (a folder of '
                                 'videos); empty: the synthetic camera.')
_VARIANTS = flags.DEFINE_list('variants', ['tiny', 'small', 'base'], 'Benchmarked variants.')
_DTYPES = flags.DEFINE_list('dtypes', ['float32', 'bfloat16'], 'Benchmarked dtypes.')
_TRAIN_VARIANT = flags.DEFINE_string('train_variant', 'base', 'Variant trained at the end.')
_TRAIN_BATCH = flags.DEFINE_integer('train_batch', 32, 'Global batch of the training run.')
_CROP = flags.DEFINE_integer('crop', 64, 'LQ crop of the end-to-end and training runs.')
_E2E_VARIANT = flags.DEFINE_string('e2e_variant', 'small', 'Variant of the end-to-end runs.')
_E2E_STEPS = flags.DEFINE_integer('e2e_steps', 20, 'Timed steps of each end-to-end run.')
_MAX_FILE_MIB = flags.DEFINE_float('max_file_mib', 15.0, 'Largest bundle file, MiB.')
_TRAIN_CONFIG = flags.DEFINE_string('train_config', 'configs/shipped.py', 'Recipe of the '
                                    'training run (relative to the checkout).')
_TRAIN_DATA = flags.DEFINE_list('train_data', [], 'Training footage (videos, folders of '
                                'videos or frames); empty: --video_dir.')
_VAL_CLIPS = flags.DEFINE_list('val_clips', [], 'Held-out clips: the trainer\'s validation '
                               'and the validation table of the exported bundle.')
_VAL_FRAMES = flags.DEFINE_integer('val_frames', 24, 'Frames per held-out clip in the '
                                   'validation table (the protocol: 24).')
_VAL_S = flags.DEFINE_float('val_s', 150.0, 'Seconds kept for the validation table.')
_INIT_FROM = flags.DEFINE_string('init_from', '', 'Bundle or workdir the training run '
                                 'continues from (warm start).')
_TRAIN_OVERRIDES = flags.DEFINE_multi_string(
    'train_override', [], 'More FIELD=VALUE config overrides of the training run, e.g. '
    'data.photo_share=0.3.')
flags.mark_flags_as_required(['out'])

# Shares of the budget: benchmarks, end-to-end; training gets the rest less export
# (and validation, with held-out clips).
BENCH_SHARE, E2E_SHARE, EXPORT_S = 0.35, 0.2, 45.0


def _config(variant: str, **fields: Any):
  from clarity_jax import config as config_lib  # pylint: disable=g-import-not-at-top
  config = config_lib.get_config(REPO / 'configs' / 'default.py', f'variant={variant}')
  return config_lib.override(config, fields)


def _write(out: pathlib.Path, name: str, value: Any) -> None:
  from clarity_jax import files  # pylint: disable=g-import-not-at-top
  files.write_text(out / name, json.dumps(value, indent=1) + '\n')


def benchmarks(out: pathlib.Path, deadline: float) -> dict[str, Any]:
  """Step and inference figures for every variant x dtype, in this one process
  (one start-up and one peak measurement for all)."""
  from clarity_jax.tools import model_benchmark  # pylint: disable=g-import-not-at-top
  from clarity_jax.tools.benchmark_settings import Settings  # pylint: disable=g-import-not-at-top
  result: dict[str, Any] = {'device': model_benchmark.device_info(), 'runs': [],
                            'skipped': []}
  result['measured_peak_tflops'] = {d: model_benchmark.matmul_peak(d)
                                    for d in _DTYPES.value}
  settings = Settings(num_batches=10, warmup=2, batch=8)
  for variant in _VARIANTS.value:
    for dtype in _DTYPES.value:
      if time.monotonic() > deadline:
        result['skipped'].append(f'{variant} {dtype}: out of time')
        continue
      config = _config(variant, **{'model.dtype': dtype, 'batch_size': 16,
                                   'data.crop_size': _CROP.value})
      step = model_benchmark.step_throughput(config, settings)
      inference = model_benchmark.inference_throughput(config, settings, dtypes=(dtype,))
      peak = result['measured_peak_tflops'][dtype]
      step['share_of_measured_peak'] = step['achieved_tflops'] / peak
      inference[dtype]['share_of_measured_peak'] = inference[dtype]['achieved_tflops'] / peak
      result['runs'].append({'variant': variant, 'dtype': dtype, 'step': step,
                             'inference': inference})
      _write(out, 'benchmarks.json', result)
  return result


def end_to_end(out: pathlib.Path, deadline: float) -> dict[str, Any]:
  """Loader + step windows/s with eq. (1) on the device against on the host."""
  from clarity_jax.tools import pipeline_benchmark  # pylint: disable=g-import-not-at-top
  from clarity_jax.tools.benchmark_settings import Settings  # pylint: disable=g-import-not-at-top
  result: dict[str, Any] = {'runs': [], 'skipped': []}
  source = ({'data.source': 'footage', 'data.path': _VIDEO_DIR.value} if _VIDEO_DIR.value
            else {})
  for where in ('device', 'host'):
    if time.monotonic() > deadline:
      result['skipped'].append(f'{where}: out of time')
      continue
    config = _config(_E2E_VARIANT.value, **{
        'model.dtype': 'bfloat16', 'batch_size': _TRAIN_BATCH.value,
        'data.crop_size': _CROP.value, 'data.loader': 'auto',
        'degradation.where': where, **source})
    settings = Settings(num_batches=_E2E_STEPS.value, warmup=2)
    result['runs'].append(pipeline_benchmark.train_end_to_end(config, settings))
    _write(out, 'end_to_end.json', result)
  _write(out, 'end_to_end.json', result)  # the skipped runs too
  return result


def _train_flags(workdir: pathlib.Path, steps: int) -> list[str]:
  data = _TRAIN_DATA.value or ([_VIDEO_DIR.value] if _VIDEO_DIR.value else [])
  # Real footage when there is some (the recipe's source), else the synthetic camera.
  source = ([f'--config.data.path={",".join(data)}'] if data else
            ['--config.data.source=synthetic'])
  if _VAL_CLIPS.value:
    source.append(f'--config.data.val_path={",".join(_VAL_CLIPS.value)}')
  if _INIT_FROM.value:
    source.append(f'--config.init_from={_INIT_FROM.value}')
  return [f'--config={REPO / _TRAIN_CONFIG.value}:variant={_TRAIN_VARIANT.value}',
          f'--workdir={workdir}', '--config.model.dtype=bfloat16',
          '--config.degradation.where=device', '--config.data.loader=auto',
          f'--config.batch_size={_TRAIN_BATCH.value}',
          f'--config.data.crop_size={_CROP.value}', f'--config.num_train_steps={steps}',
          f'--config.warmup_steps={max(1, steps // 20)}', '--config.learning_rate=2e-4',
          f'--config.eval_every_steps={max(1, steps // 4)}',
          f'--config.checkpoint_every_steps={max(1, steps // 4)}',
          f'--config.log_every_steps={max(1, steps // 50)}', *source,
          *[f'--config.{o}' for o in _TRAIN_OVERRIDES.value]]


def train_and_export(out: pathlib.Path, deadline: float, step_s: float | None
                     ) -> dict[str, Any]:
  """Trains for what is left (steps from the measured step time), SIGTERM at the
  deadline as a safety net, then exports the last checkpoint."""
  workdir = out.parent / (out.name + '_run')  # checkpoints stay behind: only the bundle returns
  seconds = deadline - time.monotonic() - EXPORT_S - (_VAL_S.value if _VAL_CLIPS.value else 0)
  # Start-up, compiles and decoding the footage take about a minute of it; the rest trains.
  steps = max(1, int((seconds - 60.0) / step_s)) if step_s else 100
  env = dict(os.environ, PYTHONUNBUFFERED='1', PYTHONPATH=os.pathsep.join(
      [str(REPO), os.environ.get('PYTHONPATH', '')]))
  cmd = [sys.executable, '-m', 'clarity_jax.main', *_train_flags(workdir, steps)]
  started = time.monotonic()
  with open(out / 'train.log', 'w') as log:
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=REPO)
    try:
      proc.wait(timeout=max(1.0, seconds))
    except subprocess.TimeoutExpired:
      proc.send_signal(signal.SIGTERM)  # saves a checkpoint and stops
      proc.wait(timeout=EXPORT_S)
  result = {'steps_planned': steps, 'train_s': time.monotonic() - started,
            'returncode': proc.returncode}
  export = subprocess.run(
      [sys.executable, '-m', 'clarity_jax.export', f'--workdir={workdir}',
       f'--output={out / "bundle"}', f'--max_file_mib={_MAX_FILE_MIB.value}'],
      env=env, cwd=REPO, capture_output=True, text=True, timeout=EXPORT_S)
  result['export'] = (export.stdout + export.stderr).strip().splitlines()[-1:]
  result['export_returncode'] = export.returncode
  if _VAL_CLIPS.value and export.returncode == 0:
    result['validation'] = validate(out, env)
  return result


def validate(out: pathlib.Path, env: dict[str, str]) -> dict[str, Any]:
  """validate's table of the new bundle against the shipped model, in validation.md."""
  from clarity_jax.inference import shipped  # pylint: disable=g-import-not-at-top
  bundles = [str(out / 'bundle'), str(shipped.bundle_path())]
  proc = subprocess.run(
      [sys.executable, '-m', 'clarity_jax.validate', '--progress=false',
       f'--clips={",".join(_VAL_CLIPS.value)}', f'--bundle={",".join(bundles)}',
       '--names=trained,shipped', f'--frames={_VAL_FRAMES.value}', f'--cache={out.parent / (out.name + "_valcache")}'],
      env=env, cwd=REPO, capture_output=True, text=True, timeout=2 * _VAL_S.value)
  (out / 'validation.md').write_text(proc.stdout + proc.stderr)
  return {'returncode': proc.returncode}


def main(argv: Sequence[str]) -> None:
  if len(argv) > 1:
    raise app.UsageError(f'unexpected arguments: {argv[1:]}')
  start = time.monotonic()
  budget = _BUDGET.value
  out = pathlib.Path(_OUT.value).resolve()
  out.mkdir(parents=True, exist_ok=True)
  summary: dict[str, Any] = {'budget_s': budget, 'stages': {}}
  bench = benchmarks(out, start + BENCH_SHARE * budget)
  summary['stages']['benchmarks_s'] = time.monotonic() - start
  e2e = end_to_end(out, time.monotonic() + E2E_SHARE * budget)
  summary['stages']['end_to_end_s'] = time.monotonic() - start
  # Seconds per training step of the trained variant: the end-to-end figure when
  # it is that variant (input included), else the synthetic step time.
  step_s = next((r['step_ms'] / 1e3 for r in e2e['runs']
                 if r['variant'] == _TRAIN_VARIANT.value and r['where'] == 'device'), None)
  if step_s is None:
    step_s = next((r['step']['step_ms'] / 1e3 * _TRAIN_BATCH.value / r['step']['batch']
                   for r in bench['runs'] if r['variant'] == _TRAIN_VARIANT.value
                   and r['dtype'] == 'bfloat16'), None)
  summary['train'] = train_and_export(out, start + budget, step_s)
  summary['total_s'] = time.monotonic() - start
  _write(out, 'summary.json', summary)
  print(json.dumps(summary), flush=True)


if __name__ == '__main__':
  app.run(main)
