"""The model's benchmarks (tools/model_benchmark.py) run without TensorFlow and print
every field as one JSON object; and the command's own checks (cli/benchmark.py)."""

import json
import re
import subprocess
import sys

import pytest

from clarity_jax.tools import model_benchmark
from clarity_jax.tools.benchmark_settings import Settings


def test_every_what_imports_without_tensorflow(repo, script, command_env):
  """Every --what of the command, its table importing both benchmark modules with
  TensorFlow blocked (only running --what=input's tf.data loader needs it): the
  command starts, and names them all when refusing an unknown one."""
  out = subprocess.run(script('without_tensorflow', '-m', 'clarity_jax.benchmark',
                              '--config=configs/default.py', '--what=list'),
                       cwd=repo, env=command_env, capture_output=True, text=True, timeout=120)
  choices = re.search(r'^error: flag --what=list: value should be one of <([^>]*)>$',
                      out.stderr.strip(), re.M)
  assert out.returncode == 1 and choices, out.stderr[-3000:]
  assert choices.group(1).split('|') == ['input', 'train', 'step', 'inference', 'uncertainty',
                                         'model', 'profile', 'output', 'engines']


def test_the_command_needs_a_config_and_refuses_stray_arguments(repo):
  run = lambda *args: subprocess.run(
      [sys.executable, '-m', 'clarity_jax.benchmark', *args], cwd=repo, capture_output=True,
      text=True, timeout=120)
  out = run('--what=output')
  assert out.returncode != 0 and 'Flag --config must have a value' in out.stderr
  out = run('--what=output', '--config=configs/default.py', 'stray')
  assert out.returncode != 0 and "unexpected arguments: ['stray']" in out.stderr


def test_model_benchmark_without_tensorflow(benchmark_without_tensorflow):
  result = benchmark_without_tensorflow(
      '--what=model', '--config=configs/default.py:runlocal', '--config.model.variant=tiny',
      '--config.num_neighbors=1', '--config.batch_size=2', '--config.data.crop_size=16',
      '--num_batches=2', '--warmup=1', '--height=24', '--width=40', '--batch=2')
  assert set(result) == {'what', 'date', 'device', 'measured_matmul_peak_tflops', 'train',
                         'inference'}
  train, inference = result['train'], result['inference']
  assert train['windows_per_s'] * train['step_ms'] / 1e3 == pytest.approx(2, rel=1e-6)
  assert train['gflops_per_step'] > 0 and train['achieved_tflops'] > 0
  assert 0 < train['share_of_measured_peak']
  assert inference['output'] == [96, 160] and inference['batch'] == 2
  for dtype in ('float32', 'bfloat16'):
    assert inference[dtype]['frames_per_s'] > 0
    assert inference[dtype]['gflops_per_frame'] > 0
  assert result['measured_matmul_peak_tflops']['float32'] > 0
  assert train['peak_memory_bytes'] > 0
  assert train['init_s'] > 0 and train['compile_s'] > 0
  assert train['xla_memory']['alias'] > 0  # the state is donated: updated in place


def test_profile_benchmark_without_tensorflow(tmp_path, benchmark_without_tensorflow):
  result = benchmark_without_tensorflow(
      '--what=profile', '--config=configs/default.py:runlocal', '--config.model.variant=tiny',
      '--config.batch_size=2', '--config.data.crop_size=16', '--num_batches=2',
      '--warmup=1', '--height=24', '--width=40', '--batch=1', f'--profile_dir={tmp_path}')
  model_stages = {'flow', 'warp', 'encoder', 'fusion', 'decoder'}
  train, inference = result['train'], result['inference']
  assert set(train['stages']) >= model_stages | {'loss', 'optimizer'}
  for stage in model_stages:  # every stage of the model trains
    assert train['stages'][stage]['backward_ms'] > 0, stage
    assert inference['stages'][stage]['forward_ms'] > 0, stage
  assert 'optimizer' not in inference['stages'] and 'loss' not in inference['stages']
  # Nearly every op of the step is attributed to a named stage. Counted, not
  # timed: with two timed calls one stalled op can swing the time share.
  ops = {stage: v['ops_per_call'] for stage, v in train['stages'].items()}
  assert ops.get('other', 0) < 0.05 * sum(ops.values()), ops
  assert list((tmp_path / 'train').rglob('*.trace.json.gz'))


def test_uncertainty_benchmark_times_the_model_with_and_without_the_head(tiny_config):
  result = model_benchmark.uncertainty_overhead(
      tiny_config(), Settings(num_batches=2, warmup=1, height=24, width=40, batch=2))
  json.dumps(result)
  assert result['what'] == 'uncertainty' and result['output'] == [96, 160]
  ms = result['ms_per_frame']
  assert ms['without_head'] > 0 and ms['with_head'] > 0
  assert result['time_overhead'] == pytest.approx(ms['with_head'] / ms['without_head'] - 1)
  # The head's two LR convs cost a share of the decoder, far below the whole model.
  assert 0 < result['flops_overhead'] < 0.25
