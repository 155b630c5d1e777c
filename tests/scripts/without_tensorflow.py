"""Runs a command, or imports modules, with TensorFlow made unimportable: as on the
accelerator machines, which have none. A process of its own: blocking TensorFlow in
pytest's process would break the other tests' imports.

  python tests/scripts/without_tensorflow.py -m clarity_jax.main --workdir=... [flags]
  python tests/scripts/without_tensorflow.py --import clarity_jax.models clarity_jax.train ...
"""

from __future__ import annotations

import importlib
import runpy
import sys

sys.modules['tensorflow'] = None
sys.modules['tensorflow_datasets'] = None


def main(argv: list[str]) -> None:
  if len(argv) >= 2 and argv[0] == '-m':
    sys.argv = argv[1:]  # as `python -m MODULE ARGS` sees them (runpy sets argv[0])
    runpy.run_module(argv[1], run_name='__main__', alter_sys=True)
  elif argv and argv[0] == '--import':
    for name in argv[1:]:
      importlib.import_module(name)
  else:
    sys.exit(f'usage: {__doc__}')


if __name__ == '__main__':
  main(sys.argv[1:])
