"""The thread-pool loader: tf.data's batches without TensorFlow, in order, resumable."""

import hashlib
import json
import subprocess
import threading

import numpy as np
import pytest

from clarity_jax.data import loader
from clarity_jax.data import pipeline
from clarity_jax import errors


def take(module, config, n, **kwargs):
  it = module.create_train_iterator(config, process_index=kwargs.pop('process_index', 0),
                                    process_count=kwargs.pop('process_count', 1), **kwargs)
  out = [next(it) for _ in range(n)]
  if module is loader:
    it.close()
  return out


def assert_same_batches(a, b):
  assert len(a) == len(b)
  for x, y in zip(a, b):
    assert list(x) == list(y)
    for key in x:
      assert x[key].dtype == y[key].dtype and x[key].shape == y[key].shape, key
      np.testing.assert_array_equal(x[key], y[key], err_msg=key)


def loader_threads():
  return [t for t in threading.enumerate() if t.name.startswith('clarity_jax.loader')]


@pytest.mark.parametrize('process_index', [0, 1])
def test_threads_serve_tf_data_batches_byte_for_byte(process_index, loader_config):
  config = loader_config(**{'loss.temporal_weight': 0.1})
  kwargs = {'process_index': process_index, 'process_count': 2}
  threads = take(loader, config, 3, **kwargs)
  assert_same_batches(threads, take(pipeline, config, 3, **kwargs))
  assert set(threads[0]) == {'lq', 'hr', 'lq_next', 'hr_next'}
  assert threads[0]['lq'].shape == (2, 3, 8, 8, 3)


def test_device_mode_batches_under_both_loaders(loader_config):
  """tf.numpy_function declares every device-mode key's dtype and shape; the threads
  serve the same bytes (subnormal kernel taps included: tf.data flushes them)."""
  config = loader_config(**{'degradation.where': 'device'})
  kwargs = {'process_index': 1, 'process_count': 2, 'start_step': 3}
  threads = take(loader, config, 2, **kwargs)
  assert_same_batches(threads, take(pipeline, config, 2, **kwargs))
  batch = threads[0]
  assert batch['index'].dtype == np.uint32 and batch['deg_resize'].dtype == np.int32
  # The synthetic camera's shots (the device renders them): 3 frames, one affine each.
  assert batch['cam_view'].shape == (2, 3, 1, 2, 3) and batch['codec_crf'].shape == (2,)
  # Global indices n * 4 + p * 2 + i at steps n = 3, 4 for host p = 1.
  assert [b['index'].tolist() for b in threads] == [[14, 15], [18, 19]]


def test_resumes_exactly_at_start_step(loader_config):
  fresh = take(loader, loader_config(), 3)
  assert_same_batches(take(loader, loader_config(), 1, start_step=2), fresh[2:])
  # More workers and a deeper buffer change the timing, not the stream.
  busy = loader_config(**{'data.num_parallel_calls': -1, 'data.prefetch': 3})
  assert_same_batches(take(loader, busy, 3), fresh)


def test_eval_is_identical_at_every_call_and_equals_tf_data(loader_config):
  config = loader_config(num_eval_batches=2)
  first = loader.create_eval_iterator(config, process_index=0, process_count=1)
  assert len(first) == 2
  a, again = list(first), list(first)
  other_call = list(loader.create_eval_iterator(loader_config(num_eval_batches=2, seed=5),
                                                process_index=0, process_count=1))
  assert_same_batches(a, again)
  assert_same_batches(a, other_call)
  assert_same_batches(a, list(pipeline.create_eval_iterator(config, process_index=0,
                                                            process_count=1)))
  assert not loader_threads()  # a finished pass joins its threads


def test_global_batch_must_divide_over_hosts(loader_config):
  with pytest.raises(errors.ConfigError, match=r'^config.batch_size: .*3 processes'):
    loader.create_train_iterator(loader_config(), process_index=0, process_count=3)


def test_choose(loader_config):
  assert loader.choose(loader_config()) == 'tf'  # 'auto', and TensorFlow imports here
  assert loader.choose(loader_config(**{'data.loader': 'threads'})) == 'threads'
  assert loader.choose(loader_config(**{'data.loader': 'tf'})) == 'tf'
  # The synthetic camera's device examples too: tf.data where TensorFlow imports.
  assert loader.choose(loader_config(**{'degradation.where': 'device'})) == 'tf'
  # 'processes' (worker processes) is gone: one line naming the choices.
  for gone in ('grain', 'processes'):
    with pytest.raises(errors.ConfigError) as raised:
      loader.choose(loader_config(**{'data.loader': gone}))
    assert str(raised.value) == (f"config.data.loader: {gone!r} is not one of "
                                 "('auto', 'tf', 'threads')")


def test_runs_where_tensorflow_cannot_be_imported(loader_config, repo, tiny_overrides, script,
                                                  command_env):
  """A subprocess with TensorFlow blocked: 'auto' takes the threads, 'tf' is a config
  error, and the batches are those of this process (equal to tf.data's, above).
  It exits without closing its iterator: the threads must not hold it."""
  overrides = {**tiny_overrides, 'data.crop_size': 8, 'batch_size': 4,
               'data.num_parallel_calls': 2, 'data.prefetch': 1}
  out = subprocess.run(script('loader_without_tensorflow', repo / 'configs' / 'default.py',
                              json.dumps(overrides)),
                       capture_output=True, text=True, cwd=repo, env=command_env, timeout=120)
  assert out.returncode == 0, out.stderr
  (batch,) = take(loader, loader_config(), 1, start_step=1)
  expected = ''.join(f'{key} {hashlib.sha256(batch[key].tobytes()).hexdigest()}\n'
                     for key in sorted(batch))
  assert out.stdout == expected


def test_an_example_error_reaches_the_consumer_once(failing_config):
  """Every example fails: the consumer gets the example's own error, once."""
  it = loader.create_train_iterator(failing_config, process_index=0, process_count=1)
  with pytest.raises(ValueError, match="^unsupported video codec 'libx265'") as raised:
    next(it)
  assert type(raised.value) is ValueError  # the example's own error, not wrapped
  assert '\n' not in str(raised.value)
  with pytest.raises(StopIteration):  # reported once: the stream has ended
    next(it)
  assert not loader_threads()


def test_closing_an_endless_stream_joins_its_threads(loader_config):
  it = loader.create_train_iterator(loader_config(), process_index=0, process_count=1)
  next(it)
  assert loader_threads()
  it.close()
  assert not loader_threads()
