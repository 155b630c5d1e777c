"""Examples made in worker processes: the thread loader's batches, byte for byte, with
errors, closing and dead workers handled as the threads handle theirs."""

import os
import signal
import time

import numpy as np
import pytest

from clarity_jax.media import frames
from clarity_jax.data import loader
from clarity_jax.data import worker_pool
from clarity_jax import errors


def _take(config, n, **kwargs):
  it = loader.create_train_iterator(config, process_index=1, process_count=2, **kwargs)
  try:
    return [next(it) for _ in range(n)]
  finally:
    it.close()


def _pools():
  return list(worker_pool._LIVE)  # pylint: disable=protected-access


def _gone(pid: int) -> bool:
  try:
    os.kill(pid, 0)
  except ProcessLookupError:
    return True
  return False


@pytest.mark.parametrize('where', ['device', 'host'])
def test_processes_serve_the_threads_batches_byte_for_byte(loader_config, where):
  """Host 1 of 2, from step 2: the same global indices, the same examples (the config
  crosses as JSON), whichever worker makes each."""
  config = loader_config(**{'degradation.where': where, 'loss.temporal_weight': 0.1})
  config.data.loader = 'processes'
  got = _take(config, 3, start_step=2)
  config.data.loader = 'threads'
  want = _take(config, 3, start_step=2)
  for a, b in zip(got, want):
    assert list(a) == list(b)
    for key in a:
      assert a[key].dtype == b[key].dtype and a[key].shape == b[key].shape, key
      np.testing.assert_array_equal(a[key], b[key], err_msg=key)
  assert not _pools()


def test_an_example_error_reaches_the_consumer_as_its_own_class(failing_config):
  """The worker's ValueError is raised here, same class and message, once; then the
  workers are gone and the shared memory freed."""
  failing_config.data.loader = 'processes'
  it = loader.create_train_iterator(failing_config, process_index=0, process_count=1)
  with pytest.raises(ValueError, match="^unsupported video codec 'libx265'") as raised:
    next(it)
  assert type(raised.value) is ValueError and '\n' not in str(raised.value)
  with pytest.raises(StopIteration):
    next(it)
  assert not _pools()


def test_a_workers_error_is_rebuilt_as_its_own_class():
  """This package's exceptions and builtins come back as themselves (the message is
  all a worker sends), others as a RuntimeError naming them."""
  error = worker_pool._rebuild(  # pylint: disable=protected-access
      'clarity_jax.media.frames.FrameError', 'a.png: not a readable image')
  assert type(error) is frames.FrameError and isinstance(error, errors.PathError)
  assert str(error) == 'a.png: not a readable image'
  assert type(worker_pool._rebuild('builtins.KeyError', 'k')) is KeyError  # pylint: disable=protected-access
  other = worker_pool._rebuild('numpy.exceptions.AxisError', 'axis 3')  # pylint: disable=protected-access
  assert type(other) is RuntimeError and str(other) == 'numpy.exceptions.AxisError: axis 3'


def test_closing_ends_the_workers_and_frees_the_shared_memory(loader_config):
  from multiprocessing import shared_memory  # pylint: disable=g-import-not-at-top
  it = loader.create_train_iterator(loader_config(**{'data.loader': 'processes'}), process_index=0,
                                    process_count=1)
  next(it)
  (pool,) = _pools()
  pids = [p.pid for p in pool._procs]  # pylint: disable=protected-access
  name = pool._shm.name  # pylint: disable=protected-access
  assert len(pids) == 2 and not any(_gone(pid) for pid in pids)
  it.close()
  assert all(_gone(pid) for pid in pids) and not _pools()
  with pytest.raises(FileNotFoundError):
    shared_memory.SharedMemory(name=name)


@pytest.mark.parametrize('killed', ['all', 'one idle'])
def test_a_dead_worker_ends_the_stream_in_one_line(loader_config, killed):
  """Killed while making examples, or while idle (nothing of its in flight): the
  stream ends with the worker's exit, it does not wait for it."""
  it = loader.create_train_iterator(loader_config(**{'data.loader': 'processes'}),
                                    process_index=0, process_count=1)
  next(it)
  (pool,) = _pools()
  procs = pool._procs  # pylint: disable=protected-access
  if killed == 'one idle':
    time.sleep(3)  # the prefetched examples are made: both workers wait
    procs = procs[:1]
  for proc in procs:
    os.kill(proc.pid, signal.SIGKILL)
  deadline = time.time() + 30
  with pytest.raises(RuntimeError, match=r'^example worker \d+ exited with status -9') as e:
    while time.time() < deadline:  # batches already made may still arrive
      next(it)
  assert '\n' not in str(e.value)
  with pytest.raises(StopIteration):
    next(it)
  assert not _pools()


def test_layout_aligns_every_array_and_holds_it_whole():
  spec = {'a': ((3, 5), np.uint8), 'b': ((2,), np.float32), 'c': ((), np.int32)}
  lay, size = worker_pool.layout(spec)
  assert [entry[0] for entry in lay] == ['a', 'b', 'c']
  ends = [offset + int(np.prod(shape)) * np.dtype(dtype).itemsize
          for _, offset, shape, dtype in lay]
  assert all(offset % 64 == 0 for _, offset, _, _ in lay)
  assert all(end <= nxt for end, (_, nxt, _, _) in zip(ends, lay[1:]))
  assert size % 64 == 0 and size >= ends[-1]
  buf = memoryview(bytearray(2 * size))
  example = {'a': np.arange(15, dtype=np.uint8).reshape(3, 5),
             'b': np.array([1.5, -2.0], np.float32), 'c': np.array(7, np.int32)}
  worker_pool._write(buf, 1, size, lay, example)  # pylint: disable=protected-access
  back = worker_pool._views(buf, 1, size, lay)  # pylint: disable=protected-access
  for key, value in example.items():
    np.testing.assert_array_equal(back[key], value)
  assert not any(buf[:size])  # slot 0 untouched


def test_measure_throughput_counts_the_workers_cpu(loader_config):
  result = loader.measure_throughput(loader_config(**{'data.loader': 'processes'}), num_batches=3,
                                     warmup=1)
  assert result['loader'] == 'processes' and result['windows_per_s'] > 0
  # The parent only stacks batches: most of the CPU time is the workers'.
  assert result['cpu_ms_per_window'] > 0.5
  assert not _pools()
