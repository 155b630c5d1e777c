"""The round trip of where='device' batches with the video codec in the mix:
eq. (1) on the device, x264 on the host, against the host path's NumPy reference."""

import threading
import time

import jax
import numpy as np
import pytest

from clarity_jax import data
from clarity_jax.data import on_device
from clarity_jax import errors
from clarity_jax import sharding
from clarity_jax.train import feed


def _device_and_host(tiny_config, **fields):
  """(device, host): one config with eq. (1) on the device and on the host. Noise off:
  the device draws its own realisations (equal in distribution only), so without it
  both paths must give the same windows up to x264's rounding."""
  common = {'degradation.noise_prob': 0.0, 'degradation.second_round_prob': 0.0,
            'data.loader': 'threads', **fields}
  return tuple(tiny_config(**common, **{'degradation.where': where})
               for where in ('device', 'host'))


def _configs(tiny_config):
  """Batches of 8 with the video codec drawn for half the windows."""
  return _device_and_host(tiny_config, **{'batch_size': 8, 'data.crop_size': 32,
                                          'degradation.video_codec_prob': 0.5})


def test_codec_windows_match_the_host_reference(tiny_config, psnr):
  device, host = _configs(tiny_config)
  assert feed.codec_on_host(device) and not feed.codec_on_host(host)
  assert feed.step_config(device).degradation.where == 'host'
  assert device.degradation.where == 'device'  # the caller's config is not touched
  mesh = sharding.make_mesh(1)
  raw = next(iter(data.create_train_iterator(device, process_index=0, process_count=1)))
  placed = next(feed.batches(device, mesh, iter([raw])))
  reference = next(iter(data.create_train_iterator(host, process_index=0, process_count=1)))
  assert set(placed) == set(reference)
  codec = raw['codec_crf'] >= 0
  assert 0 < codec.sum() < len(codec), raw['codec_crf']
  got = {k: np.asarray(jax.device_get(v)) for k, v in placed.items()}
  # The device renders the synthetic camera: cv2's frames to float32 error.
  np.testing.assert_allclose(got['hr'], reference['hr'], atol=1e-4)
  for key in ('lq', 'lq_next') if 'lq_next' in got else ('lq',):
    # Windows without the codec: the JAX camera and eq. (1) agree with cv2's and
    # NumPy's to float error (the camera's, up to 4e-5 at a pixel, through the blur),
    # but where that error tips JPEG's rounding of a DCT coefficient: then a few
    # levels over one 8x8 block, in few blocks.
    diff = np.abs(got[key][~codec] - reference[key][~codec])
    assert (diff > 5e-4).mean() < 0.03  # measured 0.4 %
    assert psnr(got[key][~codec], reference[key][~codec]) > 50.0  # measured 64.7 dB
    for g, r in zip(got[key][codec], reference[key][codec]):
      # Codec windows: x264 on inputs equal up to float error, so (nearly) the same
      # encoding; quantised to 8 bits like any x264 output.
      assert psnr(g, r) >= 40.0
      np.testing.assert_array_equal(np.round(g * 255) / 255, g)
  # The codec did run on the host: its windows differ from the device's eq. (1) alone.
  rendered = jax.jit(lambda b, p: on_device.render(device, b, p))(
      {k: v for k, v in raw.items() if k != 'codec_crf'}, on_device.camera_photos(device))
  targets, windows = jax.jit(lambda b: on_device.degrade(device, b))(rendered)
  before = np.asarray(on_device.training_pairs(targets, windows, device.num_neighbors)['lq'])
  np.testing.assert_array_equal(before[~codec], got['lq'][~codec])
  for b, g in zip(before[codec], got['lq'][codec]):
    assert np.abs(b - g).max() > 0.01


def test_batches_come_in_order_and_are_deterministic(tiny_config):
  device, _ = _configs(tiny_config)
  mesh = sharding.make_mesh(1)

  def run():
    raws = list(zip(range(3), data.create_train_iterator(device, process_index=0,
                                                         process_count=1)))
    out = [jax.device_get(b['lq']) for b in feed.batches(device, mesh, (r for _, r in raws))]
    return [r for _, r in raws], out

  raws, first = run()
  _, second = run()
  assert len(first) == 3  # the last batch too, though no batch follows it
  for a, b in zip(first, second):
    assert np.asarray(a).tobytes() == np.asarray(b).tobytes()
  # Batch i is loader batch i: its windows differ from the other batches'.
  assert not np.array_equal(first[0], first[1])
  codec = raws[0]['codec_crf'] >= 0
  stage = feed.DeviceStage(device, mesh, workers=2)
  alone = stage.finish(stage.start(raws[0]))
  stage.close()
  assert np.asarray(jax.device_get(alone['lq'])).tobytes() == np.asarray(first[0]).tobytes()
  assert codec.any()


def test_footage_batches_are_degraded_on_the_device_without_the_codec(tiny_config, tmp_path,
                                                                      png_clips):
  """Real clips (the host crops and augments HR windows), no codec: the stage
  degrades them and nothing returns to the host; the NumPy reference to float error."""
  png_clips(tmp_path / 'clips', {'a': 8}, size=(40, 48))
  device, host = _device_and_host(tiny_config, **{
      'batch_size': 4, 'data.crop_size': 8, 'data.source': 'footage',
      'data.path': str(tmp_path / 'clips'), 'data.cache_dir': str(tmp_path / 'cache'),
      'degradation.video_codec_prob': 0.0})
  assert not feed.codec_on_host(device) and on_device.camera_photos(device) is None
  raw = next(iter(data.create_train_iterator(device, process_index=0, process_count=1)))
  assert 'hr_window' in raw
  placed = next(feed.batches(device, sharding.make_mesh(1), iter([raw])))
  reference = next(iter(data.create_train_iterator(host, process_index=0, process_count=1)))
  assert set(placed) == set(reference)
  np.testing.assert_array_equal(np.asarray(placed['hr']), reference['hr'])
  np.testing.assert_allclose(np.asarray(placed['lq']), reference['lq'], atol=2e-5)


class _Loader:
  """A host-batch iterator that records the threads reading it and whether it was
  closed; raises `error` at batch `fail_at`."""

  def __init__(self, raws, fail_at=None, error=None):
    self.raws, self.fail_at, self.error = raws, fail_at, error
    self.threads, self.closed_by, self.served = set(), None, 0

  def __iter__(self):
    return self

  def __next__(self):
    self.threads.add(threading.get_ident())
    if self.served == self.fail_at:
      raise self.error
    if self.served == len(self.raws):
      raise StopIteration
    self.served += 1
    return self.raws[self.served - 1]

  def close(self):
    self.closed_by = threading.get_ident()


def test_the_stage_runs_ahead_in_its_own_thread_and_closes_cleanly(tiny_config):
  """Batches are staged off the consumer's thread (XLA:CPU then runs the stage
  beside the step), a bounded number ahead; an error in the loader reaches the
  consumer with its own class and message; closing stops the thread and closes
  the loader, and nothing is read after that."""
  device = tiny_config(**{'batch_size': 4, 'data.crop_size': 16,
                          'degradation.video_codec_prob': 0.0, 'degradation.where': 'device',
                          'data.loader': 'threads'})
  mesh = sharding.make_mesh(1)
  raws = [r for _, r in zip(range(6), data.create_train_iterator(device, process_index=0,
                                                                 process_count=1))]
  loader = _Loader(raws)
  batches = feed.batches(device, mesh, loader)
  next(batches)
  # Taken: 1. Ahead: one in the queue, one waiting to enter it, one started; and
  # no more, however long the consumer waits.
  deadline = time.monotonic() + 60
  while loader.served < 4 and time.monotonic() < deadline:
    time.sleep(0.05)
  time.sleep(0.5)
  assert loader.served == 4
  assert threading.get_ident() not in loader.threads
  batches.close()
  assert loader.closed_by is not None
  served = loader.served
  time.sleep(0.5)
  assert loader.served == served  # the thread ended
  assert not [t for t in threading.enumerate() if t.name == 'device-stage']

  failing = _Loader(raws, fail_at=3, error=errors.PathError('clip.mp4: frame 3 is unreadable'))
  got = feed.batches(device, mesh, failing)
  next(got), next(got)  # the third read fails: the stage reads one batch ahead
  with pytest.raises(errors.PathError, match='clip.mp4: frame 3 is unreadable'):
    next(got)
  assert failing.closed_by is not None
