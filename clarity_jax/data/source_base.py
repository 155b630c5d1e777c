"""What every source of sharp clips is: a `WindowSpec` and a `Source` that samples
windows of it from a seeded rng; `ClipSource`, the sampling shared by sources of
finite clips (footage.py, tfds_builder.py).

A source answers one question: given an `np.random.Generator`, return a window of
consecutive sharp HR frames `[T, crop, crop, 3]` float32 in [0, 1]. The pipeline
makes every example a pure function of (seed, example index), so sources keep no
sampling state: the same rng state always gives the same window, in any order, on
any host. Which source a config trains on: sources.make_source.

A window of T frames is centred on frame t: offsets -K..K (T = 2K + 1), or -K..K+1
(T = 2K + 2, the temporal-loss window one frame longer). Indices past a clip edge are
reflected back into the clip, so short clips and edge frames still give full windows.
"""

from __future__ import annotations

import abc
import dataclasses
import warnings
from typing import Sequence

import numpy as np

from clarity_jax import errors
from clarity_jax.media import temporal


class ClipError(errors.PathError):
  """A clip source cannot serve windows: '<path>: <what>'.

  Where the culprit is no file of its own (a clip of a tensorflow-datasets
  builder, the synthetic source) the message is built here, with that name first.
  """


class ShortClipWarning(UserWarning):
  """A clip has fewer frames than the window: windows reflect at its edges."""


@dataclasses.dataclass(frozen=True)
class WindowSpec:
  """The geometry every window of a source has.

  Attributes:
    num_frames: T, 2K + 1 (or 2K + 2 when the temporal loss needs the next window).
    crop: side of the square HR crop, in pixels.
    align: crop origins are multiples of this (the scale s), so an LQ crop of
      crop / s pixels covers exactly the same area of a frame downsampled by s.
  """
  num_frames: int
  crop: int
  align: int = 1

  def __post_init__(self):
    if self.num_frames < 1 or self.crop < 1 or self.align < 1:
      raise ValueError(f'invalid window {self}')

  @property
  def offsets(self) -> np.ndarray:
    """Frame offsets from the centre frame: -K..K, or -K..K+1 for an even T."""
    return np.arange(self.num_frames) - (self.num_frames - 1) // 2


class Source(abc.ABC):
  """Random access to sharp HR windows of a fixed `WindowSpec`."""

  def __init__(self, spec: WindowSpec):
    self.spec = spec

  @abc.abstractmethod
  def sample(self, rng: np.random.Generator) -> np.ndarray:
    """A window [T, crop, crop, 3] float32 in [0, 1], a pure function of the rng state."""


class ClipSource(Source):
  """Shared sampling for sources made of finite clips (footage, tfds).

  A centre frame is drawn uniformly over all frames of all clips (so long clips are
  not under-sampled), then the window is reflected at the clip edges and cropped at a
  random origin aligned to `spec.align`.
  """

  def __init__(self, spec: WindowSpec, names: Sequence[str], lengths: Sequence[int],
               sizes: Sequence[tuple[int, int]], where: Sequence[str]):
    super().__init__(spec)
    self.names = list(names)
    self.lengths = np.asarray(lengths, dtype=np.int64)
    self.sizes = list(sizes)
    self._starts = np.concatenate([[0], np.cumsum(self.lengths)])
    for name, length, (h, w), path in zip(names, lengths, sizes, where):
      if h < spec.crop or w < spec.crop:
        raise ClipError(f'{path}: frames are {h}x{w}, smaller than the {spec.crop}x'
                          f'{spec.crop} HR crop (lower config.data.crop_size)')
      if length < spec.num_frames:
        warnings.warn(f'{path}: clip {name!r} has {length} frames, fewer than the '
                      f'{spec.num_frames}-frame window; windows reflect at its edges',
                      ShortClipWarning, stacklevel=3)

  @property
  def num_frames_total(self) -> int:
    return int(self._starts[-1])

  def sample(self, rng: np.random.Generator) -> np.ndarray:
    g = rng.integers(self.num_frames_total)
    clip = int(np.searchsorted(self._starts, g, side='right') - 1)
    t = g - self._starts[clip]
    indices = temporal.reflect_indices(t + self.spec.offsets, int(self.lengths[clip]))
    h, w = self.sizes[clip]
    a, c = self.spec.align, self.spec.crop
    y = a * int(rng.integers((h - c) // a + 1))
    x = a * int(rng.integers((w - c) // a + 1))
    return self._read(clip, indices, y, x)

  @abc.abstractmethod
  def _read(self, clip: int, indices: np.ndarray, y: int, x: int) -> np.ndarray:
    """Frames `indices` of clip `clip`, cropped at (y, x), float32 [T, c, c, 3]."""
