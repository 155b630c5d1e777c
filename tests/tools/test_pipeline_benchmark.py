"""The input benchmark (tools/pipeline_benchmark.py): windows/s and the CPU time of
the loader config.data.loader picks, as a function and as the command's JSON."""

import json
import subprocess
import sys
import threading

import pytest

from clarity_jax.tools import pipeline_benchmark
from clarity_jax.tools.benchmark_settings import Settings


@pytest.mark.parametrize('loader', ['tf', 'threads'])
def test_input_throughput_times_the_loader_and_counts_its_threads_cpu(tiny_config, loader):
  config = tiny_config(**{'data.crop_size': 8, 'batch_size': 4, 'num_neighbors': 1,
                          'data.num_parallel_calls': 2, 'data.prefetch': 1,
                          'data.loader': loader})
  result = pipeline_benchmark.input_throughput(config, Settings(num_batches=3, warmup=1))
  assert result['what'] == 'input' and result['loader'] == loader
  assert result['degradation_where'] == 'host'
  assert result['windows_per_s'] == pytest.approx(12 / result['seconds'])
  assert (result['batch'], result['K'], result['crop'], result['scale']) == (4, 1, 8, 4)
  assert result['cores'] >= 1 and result['codec_cpu_ms_per_window'] == 0.0
  # The process's CPU time: the consumer only stacks batches, the loader's threads
  # make the examples (eq. (1), x264 on 40 % of the windows).
  assert result['cpu_ms_per_window'] > 0.5
  assert not [t for t in threading.enumerate() if t.name.startswith('clarity_jax.loader')]


@pytest.mark.parametrize('where', ['host', 'device'])
def test_benchmark_cli_prints_one_json_object(repo, where):
  """With where='device' the codec's host work (x264 after the device) is counted too."""
  cmd = [sys.executable, '-m', 'clarity_jax.benchmark', '--what=input',
         f'--config={repo / "configs" / "default.py"}:runlocal', '--num_batches=1',
         '--warmup=0', '--config.data.crop_size=8', '--config.batch_size=2',
         '--config.num_neighbors=0', '--config.data.num_parallel_calls=1',
         f'--config.degradation.where={where}', '--config.degradation.video_codec_prob=1.0']
  out = subprocess.run(cmd, capture_output=True, text=True, check=True, cwd=repo, timeout=120)
  result = json.loads(out.stdout)
  assert result['what'] == 'input' and result['windows_per_s'] > 0
  assert result['steal_s'] is None or result['steal_s'] >= 0  # None off Linux
  assert (result['batch'], result['K'], result['crop'], result['scale']) == (2, 0, 8, 4)
  assert (result['codec_cpu_ms_per_window'] > 0) == (where == 'device')
  assert result['host_cpu_ms_per_window'] == pytest.approx(
      result['cpu_ms_per_window'] + result['codec_cpu_ms_per_window'])
