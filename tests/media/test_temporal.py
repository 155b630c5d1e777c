"""Temporal windows (media/temporal.py): indices reflected at a clip's ends as
np.pad(mode='reflect') does, at any distance; streamed windows that reflect the same
way and hold only a ring buffer of frames."""

import weakref

import numpy as np
import pytest

from clarity_jax.media import temporal


@pytest.mark.parametrize('length', [2, 3, 5, 8])
def test_reflect_indices_match_numpy_reflect_padding(length):
  pad = 3 * length
  reference = np.pad(np.arange(length), pad, mode='reflect')  # index -pad .. length+pad-1
  indices = np.arange(-pad, length + pad)
  np.testing.assert_array_equal(temporal.reflect_indices(indices, length), reference)


def test_reflect_indices_single_frame_clip():
  np.testing.assert_array_equal(temporal.reflect_indices(np.arange(-3, 4), 1), np.zeros(7))


@pytest.mark.parametrize('k', [0, 1, 2, 3])
def test_windows_reflect_like_numpy(k):
  for n in range(1, 10):
    clip = [np.full((1, 1, 3), i, np.float32) for i in range(n)]
    got = np.stack([np.stack(w)[:, 0, 0, 0] for w in temporal.sliding_windows(clip, k)])
    padded = np.pad(np.arange(n), k, mode='reflect')  # numpy's reflect: 2,1,0,1,2
    want = np.stack([padded[t:t + 2 * k + 1] for t in range(n)])
    np.testing.assert_array_equal(got, want, err_msg=f'n={n}, k={k}')


def test_windows_keep_only_a_ring_buffer():
  """At most 2K+1 decoded frames alive and K frames of read-ahead, however long
  the clip: memory cannot grow with its length."""
  k, n = 2, 40
  produced: list[weakref.ref] = []
  consumed = 0

  def clip():
    nonlocal consumed
    for i in range(n):
      frame = np.full((4, 4, 3), i, np.float32)
      produced.append(weakref.ref(frame))
      consumed += 1
      yield frame
      del frame

  for t, window in enumerate(temporal.sliding_windows(clip(), k)):
    alive = sum(r() is not None for r in produced)
    assert alive <= 2 * k + 1, (t, alive)
    assert consumed <= min(t + k + 1, n)
    assert len(window) == 2 * k + 1 and window[k][0, 0, 0] == t
  assert t == n - 1
