"""This host's share of the global example stream: which indices, how many."""

import pytest

from clarity_jax.data import host_stream
from clarity_jax import errors


def test_global_index_tiles_the_global_batch():
  """Host p of P at step n takes n * B_global + p * B + i: hosts tile each step."""
  batch, hosts = 3, 4
  taken = [[host_stream.global_index(j, batch=batch, global_batch=batch * hosts,
                                     process_index=p) for j in range(5 * batch)]
           for p in range(hosts)]
  for step in range(5):
    got = sorted(i for p in range(hosts) for i in taken[p][step * batch:(step + 1) * batch])
    assert got == list(range(step * batch * hosts, (step + 1) * batch * hosts))


def test_host_share_splits_the_global_batch(tiny_config):
  config = tiny_config(batch_size=6)
  assert host_stream.host_share(config, 2, 3) == (2, 2)
  assert host_stream.host_share(config, 0, 1) == (0, 6)
  with pytest.raises(errors.ConfigError) as raised:
    host_stream.host_share(config, 0, 4)
  assert str(raised.value) == 'config.batch_size: global batch 6 is not divisible by 4 processes'
  with pytest.raises(ValueError, match=r'^process_index 3 is not in \[0, 3\)$'):
    host_stream.host_share(config, 3, 3)


def test_replayable_starts_anew_at_every_iteration():
  starts = []

  def start():
    starts.append(len(starts))
    return iter([{'n': len(starts)}])

  replay = host_stream.Replayable(start, 1)
  assert len(replay) == 1 and not starts  # nothing starts before it is iterated
  assert list(replay) == [{'n': 1}] and list(replay) == [{'n': 2}]
