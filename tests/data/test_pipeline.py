"""The tf.data pipeline: shapes, determinism, host sharding, resumption, alignment
(the thread-pool loader serves the same batches: test_loader.py)."""

import itertools

import numpy as np
import pytest

from clarity_jax.data import pipeline
from clarity_jax import errors


@pytest.fixture(scope='module')
def small(tiny_config):
  """small(**overrides): tiny windows, 8x8 LQ crops, global batch 4, sequential map
  (2 shared cores)."""
  defaults = {'data.crop_size': 8, 'batch_size': 4, 'num_neighbors': 1,
              'data.num_parallel_calls': 1, 'data.prefetch': 1}
  return lambda **overrides: tiny_config(**{**defaults, **overrides})


@pytest.fixture(scope='module')
def clean(small):
  """clean(**overrides): degradation off except the resize: area (a block mean,
  exactly computable)."""
  off = {'degradation.blur_prob': 0.0, 'degradation.noise_prob': 0.0,
         'degradation.jpeg_prob': 0.0, 'degradation.video_codec_prob': 0.0,
         'degradation.second_round_prob': 0.0,
         'degradation.resize_modes': ('area',), 'degradation.resize_probs': (1.0,)}
  return lambda **overrides: small(**{**off, **overrides})


def take(config, n, **kwargs):
  it = pipeline.create_train_iterator(config, process_index=kwargs.pop('process_index', 0),
                                      process_count=kwargs.pop('process_count', 1), **kwargs)
  return [next(it) for _ in range(n)]


def block_mean(hr: np.ndarray, s: int) -> np.ndarray:
  """Area downsampling by an integer factor, in closed form."""
  *lead, h, w, c = hr.shape
  return hr.reshape(*lead, h // s, s, w // s, s, c).mean(axis=(-4, -2))


@pytest.mark.parametrize('k,s', list(itertools.product((0, 2), (2, 4))))
def test_batch_shapes_and_ranges(k, s, small):
  (batch,) = take(small(num_neighbors=k, scale=s, **{'loss.temporal_weight': 0.1}), 1)
  c, b, t = 8, 4, 2 * k + 1
  expected = {'lq': (b, t, c, c, 3), 'hr': (b, s * c, s * c, 3),
              'lq_next': (b, t, c, c, 3), 'hr_next': (b, s * c, s * c, 3)}
  assert {key: v.shape for key, v in batch.items()} == expected
  for v in batch.values():
    assert v.dtype == np.float32 and v.min() >= 0.0 and v.max() <= 1.0


def test_no_next_window_without_temporal_loss(small):
  (batch,) = take(small(num_neighbors=2, scale=2), 1)
  assert set(batch) == {'lq', 'hr'} and batch['lq'].shape == (4, 5, 8, 8, 3)


def test_same_seed_same_batches_other_seed_other_batches(small):
  a, b = take(small(), 2), take(small(**{'data.num_parallel_calls': -1}), 2)
  for x, y in zip(a, b):
    for key in x:
      np.testing.assert_array_equal(x[key], y[key])
  other = take(small(seed=1), 1)[0]
  assert not np.allclose(a[0]['hr'], other['hr'])


def test_codec_windows_are_the_same_bytes_for_the_same_seed(small):
  """H.264 on every window: parallel map, a second run and a resumed run agree exactly."""
  codec = {'degradation.video_codec_prob': 1.0, 'num_neighbors': 2, 'data.crop_size': 16}
  a = take(small(**codec), 2)
  b = take(small(**codec, **{'data.num_parallel_calls': -1}), 2)
  resumed = take(small(**codec), 1, start_step=1)
  for x, y in zip(a, b):
    for key in x:
      np.testing.assert_array_equal(x[key], y[key])
  np.testing.assert_array_equal(resumed[0]['lq'], a[1]['lq'])
  # The codec did run: its windows differ from the same stream without it.
  (plain,) = take(small(**{**codec, 'degradation.video_codec_prob': 0.0}), 1)
  np.testing.assert_array_equal(plain['hr'], a[0]['hr'])
  assert not np.array_equal(plain['lq'], a[0]['lq'])


def test_hosts_get_disjoint_slices_of_the_global_batch(small):
  one = take(small(batch_size=4), 2, process_count=1)
  host0 = take(small(batch_size=4), 2, process_index=0, process_count=2)
  host1 = take(small(batch_size=4), 2, process_index=1, process_count=2)
  for step in range(2):
    assert host0[step]['hr'].shape[0] == 2
    for key in ('lq', 'hr'):
      # Global example n*4 + p*2 + i: the hosts' batches tile the single host's.
      np.testing.assert_array_equal(
          np.concatenate([host0[step][key], host1[step][key]]), one[step][key])
    hr = np.concatenate([host0[step]['hr'], host1[step]['hr']]).reshape(4, -1)
    assert len({row.tobytes() for row in hr}) == 4  # no example twice


def test_resuming_at_step_n_continues_the_stream(small):
  fresh = take(small(), 3)
  resumed = take(small(), 1, start_step=2)
  for key in fresh[2]:
    np.testing.assert_array_equal(resumed[0][key], fresh[2][key])


def test_global_batch_must_divide_over_hosts(small):
  with pytest.raises(errors.ConfigError, match=r'^config.batch_size: .*3 processes'):
    pipeline.create_train_iterator(small(batch_size=4), process_index=0, process_count=3)


@pytest.mark.parametrize('s', [2, 4])
def test_lq_and_hr_crops_are_aligned(s, clean):
  (batch,) = take(clean(scale=s, num_neighbors=1, **{'loss.temporal_weight': 0.1}), 1)
  k = 1
  np.testing.assert_allclose(batch['lq'][:, k], block_mean(batch['hr'], s), atol=2e-6)
  np.testing.assert_allclose(batch['lq_next'][:, k], block_mean(batch['hr_next'], s),
                             atol=2e-6)
  # A crop off by one LQ pixel would be far off.
  shifted = block_mean(np.roll(batch['hr'], s, axis=2), s)
  assert np.abs(batch['lq'][:, k] - shifted).mean() > 1e-3


def test_next_window_is_the_same_degraded_sequence_one_frame_later(small):
  (batch,) = take(small(num_neighbors=2, **{'loss.temporal_weight': 0.1}), 1)
  np.testing.assert_array_equal(batch['lq_next'][:, :-1], batch['lq'][:, 1:])
  assert not np.array_equal(batch['hr_next'], batch['hr'])


def test_eval_batches_are_finite_fixed_and_held_out(small):
  config = small(num_eval_batches=2)
  first = list(pipeline.create_eval_iterator(config, process_index=0, process_count=1))
  again = pipeline.create_eval_iterator(small(num_eval_batches=2, seed=5),
                                        process_index=0, process_count=1)
  assert len(first) == len(again) == 2
  for x, y in zip(first, again):
    assert set(x) == {'lq', 'hr'}
    for key in x:
      np.testing.assert_array_equal(x[key], y[key])
  train = take(config, 1)[0]
  assert not np.allclose(first[0]['hr'], train['hr'])


def test_frame_folder_footage_through_the_pipeline(tmp_path, small, png_clips):
  png_clips(tmp_path / 'clips', {'a': 3, 'b': 3})
  config = small(num_neighbors=2, scale=2, **{'data.source': 'footage',
                                               'data.path': str(tmp_path / 'clips'),
                                               'data.cache_dir': str(tmp_path / 'cache')})
  with pytest.warns(UserWarning, match='fewer than the 5-frame window'):
    (batch,) = take(config, 1)
  assert batch['lq'].shape == (4, 5, 8, 8, 3) and batch['hr'].shape == (4, 16, 16, 3)
