"""Temporal windows of 2K+1 frames (eq. 2), reflected at the clip's ends: frame 0 of
a K = 2 window sees frames 2, 1, 0, 1, 2, so a restored clip has as many frames as
its input. Training draws windows by index (reflect_indices); restoration streams
them (temporal_windows).
"""

from __future__ import annotations

from typing import Iterable, Iterator

import numpy as np


def reflect_indices(indices: np.ndarray, length: int) -> np.ndarray:
  """Maps any frame indices into [0, length) by mirror reflection at the clip edges.

  Reflection without repeating the edge frame (-1 -> 1, length -> length - 2), as
  np.pad(mode='reflect'), but for indices any distance outside the clip.
  """
  indices = np.asarray(indices, dtype=np.int64)
  if length == 1:
    return np.zeros_like(indices)
  period = 2 * (length - 1)
  folded = np.mod(indices, period)
  return np.where(folded >= length, period - folded, folded)


def sliding_windows(frames: Iterable[np.ndarray], k: int
                     ) -> Iterator[tuple[np.ndarray, ...]]:
  """The 2K+1 frames centred on every frame in turn, edges reflected.

  Streams: holds only frames t-K .. t+K (a ring buffer), reading K frames ahead.
  Windows are tuples of references into that buffer, not stacked copies: at 4K
  a copy per window would cost more than the buffer itself. The length of the
  stream is learnt when it ends, which is exactly when the reflection at the
  far end is needed.
  """
  source = iter(frames)
  buffer: dict[int, np.ndarray] = {}
  n = None  # number of frames, once the source is exhausted
  read = 0
  t = 0
  while True:
    while n is None and read <= t + k:
      try:
        buffer[read] = next(source)
        read += 1
      except StopIteration:
        n = read
    if n is not None and t >= n:
      return
    # Before the end is known every index <= t+K has been read; negative ones
    # mirror to at most K.
    offsets = np.arange(t - k, t + k + 1)
    indices = reflect_indices(offsets, n) if n is not None else np.abs(offsets)
    yield tuple(buffer[int(i)] for i in indices)
    buffer.pop(t - k, None)
    t += 1
