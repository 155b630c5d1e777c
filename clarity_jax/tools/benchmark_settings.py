"""What a benchmark runs besides the config: the flags of `python -m clarity_jax.benchmark`.

Its own module so that the model benchmarks (model_benchmark.py), the host-side ones
(pipeline_benchmark.py) and the command's table of both (cli/benchmark.py) share it
without importing one another.
"""

from __future__ import annotations

import dataclasses


@dataclasses.dataclass(frozen=True)
class Settings:
  """The command's flags, as every benchmark function (config, Settings) -> dict takes them."""
  num_batches: int = 20  # batches (or steps) timed
  warmup: int = 2  # untimed batches (or steps) first
  height: int = 180  # inference input (LQ); the output benchmark scales it
  width: int = 320
  batch: int = 4  # windows per model call, as enhance --batch
  profile_dir: str = ''  # 'profile': where the traces go; '': a new temporary folder
  bundle: str = ''  # 'engines': the bundle timed; '': the shipped model
  input: str = ''  # 'engines': a real clip for enhance end to end; '': none
