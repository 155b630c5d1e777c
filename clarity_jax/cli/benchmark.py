"""Throughput benchmarks, printed as one JSON object on stdout.

  python -m clarity_jax.benchmark --what=input --config=configs/default.py \\
      [--num_batches=N] [--config.data.num_parallel_calls=2]
  python -m clarity_jax.benchmark --what=train --config=configs/default.py:variant=base \\
      [--config.model.dtype=bfloat16]
  python -m clarity_jax.benchmark --what=inference --config=configs/default.py:variant=base \\
      [--height=180 --width=320 --batch=8]
  python -m clarity_jax.benchmark --what=model --config=...   # train + inference + matmul peak
  python -m clarity_jax.benchmark --what=profile --config=... [--profile_dir=DIR]  # time per stage
  python -m clarity_jax.benchmark --what=uncertainty --config=...  # what the head adds
  python -m clarity_jax.benchmark --what=output --config=... [--height=540 --width=960]  # x264
  python -m clarity_jax.benchmark --what=engines --config=configs/default.py \
      [--bundle=BUNDLE] [--input=CLIP]  # JAX / ONNX Runtime per precision and threads

--what picks an entry of BENCHMARKS: the model's (tools/model_benchmark.py) or the
host's (tools/pipeline_benchmark.py). TensorFlow is imported only when --what=input
runs the tf.data loader; the others run where TensorFlow is absent.
"""

import json
from typing import Any, Callable

from absl import flags
import ml_collections
from ml_collections import config_flags

from clarity_jax.cli import common
from clarity_jax.tools import engine_benchmark
from clarity_jax.tools import model_benchmark
from clarity_jax.tools import pipeline_benchmark
from clarity_jax.tools.benchmark_settings import Settings

Benchmark = Callable[[ml_collections.ConfigDict, Settings], dict[str, Any]]
BENCHMARKS: dict[str, Benchmark] = {
    'input': pipeline_benchmark.input_throughput,
    'train': pipeline_benchmark.train_end_to_end,
    'step': model_benchmark.step_throughput,
    'inference': model_benchmark.inference_throughput,
    'uncertainty': model_benchmark.uncertainty_overhead,
    'model': model_benchmark.model_benchmarks,
    'profile': model_benchmark.profile_stages,
    'output': pipeline_benchmark.output_throughput,
    'engines': engine_benchmark.engine_table,
}

_CONFIG = config_flags.DEFINE_config_file('config', None, 'Training config file.',
                                          lock_config=True)
_WHAT = flags.DEFINE_enum('what', 'input', list(BENCHMARKS), 'What to benchmark.')
_NUM_BATCHES = flags.DEFINE_integer('num_batches', 20, 'Batches (or steps) to time.',
                                    lower_bound=1)
_HEIGHT = flags.DEFINE_integer('height', 180, 'Inference input height (LQ).')
_WIDTH = flags.DEFINE_integer('width', 320, 'Inference input width (LQ).')
_BATCH = flags.DEFINE_integer('batch', 4, 'Windows per model call (as enhance --batch).',
                              lower_bound=1)
_PROFILE_DIR = flags.DEFINE_string('profile_dir', '', '--what=profile: where the traces go '
                                   '(default: a new temporary folder).')
_BUNDLE = flags.DEFINE_string('bundle', '', '--what=engines: the bundle timed (default: '
                              'the shipped model); without an ONNX graph, one is exported.')
_INPUT = flags.DEFINE_string('input', '', '--what=engines: a real clip that enhance restores '
                             'end to end with each engine (frames/s).')
_WARMUP = flags.DEFINE_integer('warmup', 2, 'Untimed batches (or steps) first.',
                               lower_bound=0)
flags.mark_flags_as_required(['config'])


@common.exit_on_error()
def main(argv: list[str]) -> None:
  common.start(argv, quiet=True)
  settings = Settings(
      num_batches=_NUM_BATCHES.value, warmup=_WARMUP.value, height=_HEIGHT.value,
      width=_WIDTH.value, batch=_BATCH.value, profile_dir=_PROFILE_DIR.value,
      bundle=_BUNDLE.value, input=_INPUT.value)
  result = BENCHMARKS[_WHAT.value](_CONFIG.value, settings)
  print(json.dumps(result), flush=True)
