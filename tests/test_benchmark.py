"""The benchmark runs without TensorFlow and prints every field as one JSON object."""

import json
import os
import subprocess
import sys

import pytest

from conftest import REPO

# TensorFlow made unimportable, as on the GPU machine.
RUN_WITHOUT_TF = r'''
import sys
sys.modules['tensorflow'] = None
sys.modules['tensorflow_datasets'] = None
from absl import app
from clarity_jax import benchmark
sys.argv = ['benchmark'] + sys.argv[1:]
app.run(benchmark.main)
'''


def test_model_benchmark_without_tensorflow():
  env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL='2')
  out = subprocess.run(
      [sys.executable, '-c', RUN_WITHOUT_TF, '--what=model',
       '--config=configs/default.py:runlocal', '--config.model.variant=tiny',
       '--config.num_neighbors=1', '--config.batch_size=2', '--config.data.crop_size=16',
       '--num_batches=2', '--warmup=1', '--height=24', '--width=40', '--inference_batch=2'],
      cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
  assert out.returncode == 0, out.stderr[-3000:]
  result = json.loads(out.stdout.strip().splitlines()[-1])
  assert set(result) == {'what', 'date', 'device', 'measured_matmul_peak_tflops', 'train',
                         'inference'}
  train, inference = result['train'], result['inference']
  assert train['windows_per_s'] * train['step_ms'] / 1e3 == pytest.approx(2, rel=1e-6)
  assert train['gflops_per_step'] > 0 and train['achieved_tflops'] > 0
  assert 0 < train['share_of_measured_peak']
  assert inference['output'] == [96, 160]
  for dtype in ('float32', 'bfloat16'):
    assert inference[dtype]['frames_per_s'] > 0
    assert inference[dtype]['gflops_per_frame'] > 0
  assert result['measured_matmul_peak_tflops']['float32'] > 0
  assert train['peak_memory_bytes'] > 0

