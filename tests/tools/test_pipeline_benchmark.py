"""The host's benchmarks (tools/pipeline_benchmark.py): the input benchmark's windows/s
and the CPU time of the loader config.data.loader picks, as a function and as the
command's JSON; x264 at the output size without TensorFlow; training end to end."""

import json
import os
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


def test_output_benchmark_encodes_at_the_output_size(benchmark_without_tensorflow):
  """--what=output (x264 at the output size) runs without TensorFlow."""
  result = benchmark_without_tensorflow('--what=output', '--config=configs/default.py',
                                        '--height=16', '--width=24', '--num_batches=3',
                                        '--warmup=1')
  assert result['output'] == [64, 96] and result['frames'] == 3
  for preset in ('medium', 'veryfast'):
    assert result[preset]['frames_per_s'] > 0 and result[preset]['cpu_ms_per_frame'] > 0
    assert result[preset]['kbytes_per_frame'] > 0


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
  (above)."""
  config = tiny_config(**{'degradation.where': 'device', 'data.num_parallel_calls': 1})
  result = pipeline_benchmark.train_end_to_end(config, Settings(num_batches=2, warmup=1))
  assert result['what'] == 'train' and result['where'] == 'device'
  assert result['loader'] == 'tf' and result['windows_per_s'] > 0
  assert result['steal_s'] is None or result['steal_s'] >= 0
  assert result['cpu_ms_per_window'] > 0
