"""The benchmark runs without TensorFlow and prints every field as one JSON object."""

import json
import os
import subprocess
import sys

import pytest

from clarity_jax.tools import model_benchmark
from clarity_jax.tools import pipeline_benchmark
from clarity_jax.tools.benchmark_settings import Settings

# The command with TensorFlow made unimportable, as on the GPU machine. A script of
# its own process: blocking TensorFlow here would break the other tests' imports.
RUN_WITHOUT_TF = r'''
import sys
sys.modules['tensorflow'] = None
sys.modules['tensorflow_datasets'] = None
from absl import app
from clarity_jax.cli import benchmark
sys.argv = ['benchmark'] + sys.argv[1:]
app.run(benchmark.main)
'''


def test_every_what_imports_without_tensorflow(repo):
  """Every --what of the command, its table importing both benchmark modules with
  TensorFlow blocked (only running --what=input's tf.data loader needs it)."""
  code = ("import sys; sys.modules['tensorflow'] = None; "
          "sys.modules['tensorflow_datasets'] = None; "
          "from clarity_jax.cli import benchmark; print(' '.join(benchmark.BENCHMARKS))")
  out = subprocess.run([sys.executable, '-c', code], cwd=repo, capture_output=True,
                       text=True, timeout=120, check=True)
  assert out.stdout.split() == ['input', 'train', 'step', 'inference', 'uncertainty', 'model',
                                'profile', 'output']


def test_model_benchmark_without_tensorflow(repo):
  env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL='2')
  out = subprocess.run(
      [sys.executable, '-c', RUN_WITHOUT_TF, '--what=model',
       '--config=configs/default.py:runlocal', '--config.model.variant=tiny',
       '--config.num_neighbors=1', '--config.batch_size=2', '--config.data.crop_size=16',
       '--num_batches=2', '--warmup=1', '--height=24', '--width=40', '--batch=2'],
      cwd=repo, env=env, capture_output=True, text=True, timeout=600)
  assert out.returncode == 0, out.stderr[-3000:]
  result = json.loads(out.stdout.strip().splitlines()[-1])
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


def test_profile_benchmark_without_tensorflow(tmp_path, repo):
  env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL='2')
  out = subprocess.run(
      [sys.executable, '-c', RUN_WITHOUT_TF, '--what=profile',
       '--config=configs/default.py:runlocal', '--config.model.variant=tiny',
       '--config.batch_size=2', '--config.data.crop_size=16', '--num_batches=2',
       '--warmup=1', '--height=24', '--width=40', '--batch=1',
       f'--profile_dir={tmp_path}'],
      cwd=repo, env=env, capture_output=True, text=True, timeout=600)
  assert out.returncode == 0, out.stderr[-3000:]
  result = json.loads(out.stdout.strip().splitlines()[-1])
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


def test_output_benchmark_encodes_at_the_output_size(repo):
  out = subprocess.run(
      [sys.executable, '-c', RUN_WITHOUT_TF, '--what=output',
       '--config=configs/default.py', '--height=16', '--width=24', '--num_batches=3',
       '--warmup=1'],
      cwd=repo, env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL='2'), capture_output=True,
      text=True, timeout=600)
  assert out.returncode == 0, out.stderr[-3000:]
  result = json.loads(out.stdout.strip().splitlines()[-1])
  assert result['output'] == [64, 96] and result['frames'] == 3
  for preset in ('medium', 'veryfast'):
    assert result[preset]['frames_per_s'] > 0 and result[preset]['cpu_ms_per_frame'] > 0
    assert result[preset]['kbytes_per_frame'] > 0


def test_the_command_needs_a_config_and_refuses_stray_arguments(repo):
  run = lambda *args: subprocess.run(
      [sys.executable, '-m', 'clarity_jax.benchmark', *args], cwd=repo, capture_output=True,
      text=True, timeout=120)
  out = run('--what=output')
  assert out.returncode != 0 and 'Flag --config must have a value' in out.stderr
  out = run('--what=output', '--config=configs/default.py', 'stray')
  assert out.returncode != 0 and "unexpected arguments: ['stray']" in out.stderr


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


def test_steal_seconds_reads_the_cpu_line_of_proc_stat():
  """The hypervisor's steal time: /proc/stat's 8th value after 'cpu', in clock ticks."""
  if not os.path.exists('/proc/stat'):
    assert pipeline_benchmark.steal_seconds() is None
    return
  with open('/proc/stat', encoding='ascii') as f:
    name, *ticks = f.readline().split()
  assert name == 'cpu'
  before = int(ticks[7]) / os.sysconf('SC_CLK_TCK')
  got = pipeline_benchmark.steal_seconds()
  assert before <= got < before + 60  # steal only grows


def test_train_end_to_end_reports_the_loader_auto_chose(tiny_config):
  """--what=train with the synthetic camera on the device: the loader 'auto' chose
  (tf.data, TensorFlow being installed here) and every field, on a real run. That
  the loader threads' CPU time is counted is checked on the input benchmark
  (test_pipeline_benchmark.py)."""
  config = tiny_config(**{'degradation.where': 'device', 'data.num_parallel_calls': 1})
  result = pipeline_benchmark.train_end_to_end(config, Settings(num_batches=2, warmup=1))
  assert result['what'] == 'train' and result['where'] == 'device'
  assert result['loader'] == 'tf' and result['windows_per_s'] > 0
  assert result['steal_s'] is None or result['steal_s'] >= 0
  assert result['cpu_ms_per_window'] > 0
