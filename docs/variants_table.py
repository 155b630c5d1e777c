"""Prints the ClarityNetSR variants table (parameters, XLA-counted GFLOPs).

  python docs/variants_table.py [--h=180 --w=320 --scale=4 --num_neighbors=2]

Paste the output into docs/architecture.md and the docstring of
clarity_jax/models/claritynet.py (tests check the parameter counts there).
Nothing is run: each variant is only compiled, for the backend in use.
"""

import argparse

from clarity_jax.models import claritynet
from clarity_jax.models import cost


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('--h', type=int, default=180)
  parser.add_argument('--w', type=int, default=320)
  parser.add_argument('--scale', type=int, default=4)
  parser.add_argument('--num_neighbors', type=int, default=2)
  args = parser.parse_args()
  print(f'| variant | params | GFLOPs / {args.h}x{args.w} input, x{args.scale}, '
        f'K={args.num_neighbors} |')
  print('| --- | --- | --- |')
  for name in claritynet.VARIANTS:
    cost = cost.measure_cost(name, h=args.h, w=args.w, scale=args.scale,
                                   num_neighbors=args.num_neighbors)
    print(f"| {name} | {cost['params']:,} | {cost['gflops']:.1f} |")
  print(f"(XLA cost analysis, backend {cost['backend']}, batch 1, float32)")


if __name__ == '__main__':
  main()
