"""Sources of sharp high-resolution clips, sampled as cropped windows by a seeded rng.

Each source answers one question: given an `np.random.Generator`, return a window of
consecutive sharp HR frames `[T, crop, crop, 3]` float32 in [0, 1]. The pipeline makes
every example a pure function of (seed, example index), so sources keep no sampling
state: the same rng state always gives the same window, in any order, on any host.

Kinds (config.data.source):
  synthetic      skimage.data photographs animated by a synthetic camera and an
                 independently moving object (embedded, offline, the default;
                 synthetic.py);
  frame_folders  ROOT/<clip>/*.png|jpg (REDS, GoPro, Vimeo-90K, Vid4), read per window;
  video          a folder of video files, decoded once into uint8 .npy memmaps
                 (footage.py);
  footage        any mix of video files, folders of videos and frame folders (paths
                 comma separated), decoded once into the same cache;
  tfds           the `clarity_frame_folders` tensorflow-datasets builder.

A window of T frames is centred on frame t: offsets -K..K (T = 2K + 1), or -K..K+1
(T = 2K + 2, the temporal-loss window one frame longer). Indices past a clip edge are
reflected back into the clip, so short clips and edge frames still give full windows.
"""

from __future__ import annotations

import abc
import dataclasses
import os
import pathlib
import warnings
from typing import Sequence

import cv2
import ml_collections
import numpy as np

from clarity_jax.media import frames
from clarity_jax.media import temporal
from clarity_jax import errors


class SourceError(errors.PathError):
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
  """Shared sampling for sources made of finite clips (folders, videos, tfds).

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
        raise SourceError(f'{path}: frames are {h}x{w}, smaller than the {spec.crop}x'
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


def _gather(indices: np.ndarray, read_one) -> np.ndarray:
  """Stacks read_one(i) for each index, reading a frame repeated by reflection once."""
  unique, inverse = np.unique(indices, return_inverse=True)
  loaded = np.stack([read_one(int(i)) for i in unique])
  return loaded[inverse.reshape(-1)]


class FrameFolderSource(ClipSource):
  """ROOT/<clip>/<frames sorted by name>.png|jpg, frames read from disk per window."""

  def __init__(self, root: str | os.PathLike, spec: WindowSpec):
    root = pathlib.Path(root)
    clips = frames.list_clips(root)  # FrameError naming root when it has no frames
    sizes = [frames.check_clip_sizes(name, paths) for name, paths in clips.items()]
    self._paths = list(clips.values())
    super().__init__(spec, list(clips), [len(p) for p in self._paths], sizes,
                     [str(p[0].parent) for p in self._paths])

  def _read(self, clip: int, indices: np.ndarray, y: int, x: int) -> np.ndarray:
    c = self.spec.crop
    paths = self._paths[clip]
    return _gather(indices, lambda i: frames.read_image(paths[i])[y:y + c, x:x + c])


class TfdsSource(ClipSource):
  """Clips of a prepared tensorflow-datasets builder (clarity_frame_folders).

  The split is read once with image decoding skipped and kept in memory as the
  encoded frame bytes (the size of the dataset on disk); a window decodes only its
  own T frames. For datasets larger than RAM, use the frame_folders source instead.
  """

  def __init__(self, name: str, data_dir: str, split: str, spec: WindowSpec):
    # pylint: disable=g-import-not-at-top
    import tensorflow_datasets as tfds
    from clarity_jax.data import tfds_builder  # registers clarity_frame_folders
    # pylint: enable=g-import-not-at-top
    del tfds_builder
    where = os.path.join(data_dir, name) if data_dir else name
    try:
      builder = tfds.builder(name, data_dir=data_dir or None)
    except tfds.core.registered.DatasetNotFoundError as e:
      raise SourceError(f'{where}: unknown tensorflow-datasets builder ({e})') from e
    if not builder.is_prepared():
      raise SourceError(f'{where}: dataset not prepared; build it first (see '
                        'clarity_jax/data/tfds_builder.py)')
    if split not in builder.info.splits:
      raise SourceError(f'{where}: no split {split!r} (has {list(builder.info.splits)})')
    ds = builder.as_dataset(split=split, decoders={'frames': tfds.decode.SkipDecoding()})
    self._encoded = []
    names, sizes = [], []
    for example in tfds.as_numpy(ds):
      names.append(example['clip'].decode())
      self._encoded.append(list(example['frames']))
      sizes.append(_decode_frame(self._encoded[-1][0], f'{where}:{names[-1]}').shape[:2])
    self._where = where
    super().__init__(spec, names, [len(e) for e in self._encoded], sizes,
                     [f'{where}:{n}' for n in names])

  def _read(self, clip: int, indices: np.ndarray, y: int, x: int) -> np.ndarray:
    c = self.spec.crop
    where = f'{self._where}:{self.names[clip]}'
    encoded = self._encoded[clip]
    return _gather(indices, lambda i: _decode_frame(encoded[i], f'{where}[{i}]')[
        y:y + c, x:x + c])


def _decode_frame(data: bytes, where: str) -> np.ndarray:
  """Encoded frame bytes -> float32 RGB in [0, 1], converted as frames.read_image does."""
  img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
  if img is None or img.size == 0:
    raise SourceError(f'{where}: not a readable image (truncated or corrupt?)')
  # frames.py has no public bytes decoder; reuse its conversion rather than a copy.
  return frames._to_float_rgb(img, where)  # pylint: disable=protected-access


class MixedSource(Source):
  """Windows from several sources in fixed shares: the window's first draw picks
  the source, the rest of its rng draws the window there, so every window stays a
  pure function of the rng state."""

  def __init__(self, parts: Sequence[Source], shares: Sequence[float]):
    super().__init__(parts[0].spec)
    if len(parts) != len(shares) or any(p.spec != self.spec for p in parts):
      raise ValueError('MixedSource: one share per part, parts of one WindowSpec')
    self.parts = list(parts)
    self._cumulative = np.cumsum(shares) / np.sum(shares)

  def sample(self, rng: np.random.Generator) -> np.ndarray:
    part = int(np.searchsorted(self._cumulative, rng.random(), side='right'))
    return self.parts[min(part, len(self.parts) - 1)].sample(rng)


class TurnedSource(Source):
  """Turns a share of another source's windows by a uniform random angle.

  Video codecs store fine texture as axis-aligned DCT patterns, and a restorer
  trained on codec-compressed targets learns to draw them: thin horizontal and
  vertical lines (docs/results.md). Turned windows keep the footage's scale and
  content with no preferred axis; eq. (1), codecs included, is applied afterwards,
  so the degraded input keeps its axis-aligned blocks. The inner source serves
  crops sqrt(2) larger, whose centre any turn covers. Every frame of a window turns
  by the same angle, so its motion stays physical.
  """

  def __init__(self, make_inner, spec: WindowSpec, share: float):
    super().__init__(spec)
    side = spec.align * -(-int(np.ceil(spec.crop * np.sqrt(2.0)) + 2) // spec.align)
    self.inner = make_inner(dataclasses.replace(spec, crop=side))
    self.share = share

  def sample(self, rng: np.random.Generator) -> np.ndarray:
    window = self.inner.sample(rng)
    turn, degrees = rng.random() < self.share, rng.uniform(0.0, 90.0)
    side, c = window.shape[1], self.spec.crop
    if turn:
      # Lanczos: of OpenCV's interpolations the one that softens texture least.
      matrix = cv2.getRotationMatrix2D((side / 2 - 0.5, side / 2 - 0.5), degrees, 1.0)
      window = np.stack([cv2.warpAffine(f, matrix, (side, side), flags=cv2.INTER_LANCZOS4,
                                        borderMode=cv2.BORDER_REFLECT) for f in window])
    o = (side - c) // 2
    return np.clip(window[:, o:o + c, o:o + c], 0.0, 1.0)


def make_source(config: ml_collections.ConfigDict, spec: WindowSpec, *,
                split: str = 'train') -> Source:
  """The source of `split` ('train' or 'validation') that `config.data` describes.

  Validation reads config.data.val_path with the same kind of source as training
  (frame folders when training is 'synthetic'; for 'tfds', the builder's
  'validation' split under that data_dir), or, when val_path is empty, the
  held-out photographs (synthetic.VALIDATION_PHOTOS).
  """
  # synthetic.py builds on this module's Source: imported here.
  from clarity_jax.data import synthetic  # pylint: disable=g-import-not-at-top
  data = config.data
  kind = data.source
  if split == 'validation':
    if not data.val_path:
      return synthetic.SyntheticSource(synthetic.load_photos('validation'), spec,
                                       data.frames_per_clip)
    path = data.val_path
  elif split == 'train':
    path = data.path
  else:
    raise ValueError(f"split must be 'train' or 'validation', got {split!r}")
  if kind == 'synthetic':
    if split == 'train':
      return synthetic.SyntheticSource(synthetic.load_photos('train'), spec,
                                       data.frames_per_clip)
    return FrameFolderSource(path, spec)
  clips = lambda spec: _clip_source(data, kind, path, split, spec)
  if split != 'train':
    return clips(spec)
  turned = data.get('turn_share', 0.0)
  source = TurnedSource(clips, spec, turned) if turned > 0 else clips(spec)
  share = data.get('photo_share', 0.0)
  if share > 0:
    # Footage with the embedded photographs mixed in: texture that no codec has
    # quantised into axis-aligned DCT patterns (docs/results.md, the line artifact).
    photos = synthetic.SyntheticSource(synthetic.load_photos('train'), spec,
                                       data.frames_per_clip)
    source = MixedSource([source, photos], [1.0 - share, share])
  return source


def _clip_source(data: ml_collections.ConfigDict, kind: str, path: str, split: str,
                 spec: WindowSpec) -> Source:
  """The source of real clips of `kind` at `path`."""
  # footage.py builds on this module's Source: imported here.
  from clarity_jax.data import footage  # pylint: disable=g-import-not-at-top
  if kind == 'frame_folders':
    return FrameFolderSource(path, spec)
  if kind == 'video':
    return footage.VideoSource(path, spec, cache_dir=data.cache_dir,
                               downscale=data.get('downscale', 1))
  if kind == 'footage':
    return footage.FootageSource([p for p in path.split(',') if p], spec,
                                 cache_dir=data.cache_dir, downscale=data.get('downscale', 1))
  if kind == 'tfds':
    return TfdsSource(data.tfds_name, path, split, spec)
  raise ValueError(f'config.data.source: unknown source {kind!r}')
