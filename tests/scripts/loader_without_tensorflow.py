"""The thread loader where TensorFlow cannot be imported: 'auto' takes the threads,
'tf' is a config error. Prints the sha256 of every array of the batch at step 1, a
line per key ('key hexdigest'), and exits without closing the iterator.

  python tests/scripts/loader_without_tensorflow.py CONFIG_FILE OVERRIDES_JSON
"""

from __future__ import annotations

import sys

sys.modules['tensorflow'] = None

import hashlib  # pylint: disable=g-import-not-at-top,g-bad-import-order
import json  # pylint: disable=g-import-not-at-top,g-bad-import-order

from clarity_jax import config as config_lib  # pylint: disable=g-import-not-at-top
from clarity_jax import errors  # pylint: disable=g-import-not-at-top
from clarity_jax.data import loader  # pylint: disable=g-import-not-at-top


def main(config_file: str, overrides: str) -> None:
  config = config_lib.override(config_lib.get_config(config_file, 'runlocal'),
                               json.loads(overrides))
  assert loader.choose(config) == 'threads'
  config.data.loader = 'tf'
  try:
    loader.choose(config)
    raise SystemExit('no error')
  except errors.ConfigError as e:
    assert 'needs TensorFlow' in str(e), e
  config.data.loader = 'auto'
  it = loader.create_train_iterator(config, start_step=1, process_index=0, process_count=1)
  batch = next(it)
  for key in sorted(batch):
    print(key, hashlib.sha256(batch[key].tobytes()).hexdigest())
  assert 'tensorflow' not in {m.split('.')[0] for m in sys.modules
                              if sys.modules[m] is not None}


if __name__ == '__main__':
  main(*sys.argv[1:])
