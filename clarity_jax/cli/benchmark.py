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

--what picks an entry of tools/benchmark.py's BENCHMARKS. TensorFlow is imported
only for --what=input; the others run where TensorFlow is absent.
"""

import json

from absl import flags
from ml_collections import config_flags

from clarity_jax.cli import common
from clarity_jax.tools import benchmark

_CONFIG = config_flags.DEFINE_config_file('config', None, 'Training config file.',
                                          lock_config=True)
_WHAT = flags.DEFINE_enum('what', 'input', list(benchmark.BENCHMARKS), 'What to benchmark.')
_NUM_BATCHES = flags.DEFINE_integer('num_batches', 20, 'Batches (or steps) to time.',
                                    lower_bound=1)
_HEIGHT = flags.DEFINE_integer('height', 180, 'Inference input height (LQ).')
_WIDTH = flags.DEFINE_integer('width', 320, 'Inference input width (LQ).')
_BATCH = flags.DEFINE_integer('batch', 4, 'Windows per model call (as enhance --batch).',
                              lower_bound=1)
_PROFILE_DIR = flags.DEFINE_string('profile_dir', '', '--what=profile: where the traces go '
                                   '(default: a new temporary folder).')
_WARMUP = flags.DEFINE_integer('warmup', 2, 'Untimed batches (or steps) first.',
                               lower_bound=0)
flags.mark_flags_as_required(['config'])


@common.exit_on_error()
def main(argv: list[str]) -> None:
  common.start(argv, quiet=True)
  settings = benchmark.Settings(
      num_batches=_NUM_BATCHES.value, warmup=_WARMUP.value, height=_HEIGHT.value,
      width=_WIDTH.value, batch=_BATCH.value, profile_dir=_PROFILE_DIR.value)
  result = benchmark.BENCHMARKS[_WHAT.value](_CONFIG.value, settings)
  print(json.dumps(result), flush=True)
