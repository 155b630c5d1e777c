"""Throughput benchmarks, printed as one JSON object on stdout.

  python -m clarity_jax.benchmark --what=input --config=configs/default.py \\
      [--num_batches=N] [--config.data.num_parallel_calls=2]

--what picks an entry of BENCHMARKS: a function (config, num_batches, warmup) -> dict
of JSON-serialisable results. Each imports what it needs inside, so TensorFlow is
imported only for --what=input and the others run where TensorFlow is absent.
"""

from __future__ import annotations

import json
from typing import Any, Callable

from absl import app
from absl import flags
import ml_collections
from ml_collections import config_flags


def input_throughput(config: ml_collections.ConfigDict, num_batches: int,
                     warmup: int) -> dict[str, Any]:
  """Windows/s of the tf.data training pipeline on this host (full degradation)."""
  from clarity_jax.data import pipeline  # pylint: disable=g-import-not-at-top
  return pipeline.measure_throughput(config, num_batches, warmup)


Benchmark = Callable[[ml_collections.ConfigDict, int, int], dict[str, Any]]
BENCHMARKS: dict[str, Benchmark] = {'input': input_throughput}

_CONFIG = config_flags.DEFINE_config_file('config', None, 'Training config file.',
                                          lock_config=True)
_WHAT = flags.DEFINE_enum('what', 'input', list(BENCHMARKS), 'What to benchmark.')
_NUM_BATCHES = flags.DEFINE_integer('num_batches', 20, 'Batches (or steps) to time.',
                                    lower_bound=1)
_WARMUP = flags.DEFINE_integer('warmup', 2, 'Untimed batches (or steps) first.',
                               lower_bound=0)


def main(argv: list[str]) -> None:
  if len(argv) > 1:
    raise app.UsageError(f'Unexpected arguments: {argv[1:]}')
  if _CONFIG.value is None:
    raise app.UsageError('--config is required, e.g. --config=configs/default.py')
  result = BENCHMARKS[_WHAT.value](_CONFIG.value, _NUM_BATCHES.value, _WARMUP.value)
  print(json.dumps(result), flush=True)


if __name__ == '__main__':
  app.run(main)
