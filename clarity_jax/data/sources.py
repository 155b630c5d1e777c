"""The source of sharp clips that config.data describes (make_source), and the two
sources made of others: MixedSource (photographs mixed into footage) and
TurnedSource (windows turned by a random angle). What a source is: source_base.py.

Kinds (config.data.source):
  synthetic  skimage.data photographs animated by a synthetic camera and an
             independently moving object (embedded, offline, the default;
             synthetic.py);
  footage    real clips: video files, folders of videos and frame folders
             (ROOT/<clip>/<frames>, as REDS, GoPro, Vid4; or one clip folder), comma
             separated, decoded once into a cache (footage.py);
  tfds       the `clarity_frame_folders` tensorflow-datasets builder (tfds_builder.py).
"""

from __future__ import annotations

import dataclasses
from typing import Sequence

import cv2
import ml_collections
import numpy as np

from clarity_jax.data import footage
from clarity_jax.data import source_base
from clarity_jax.data import synthetic


class MixedSource(source_base.Source):
  """Windows from several sources in fixed shares: the window's first draw picks
  the source, the rest of its rng draws the window there, so every window stays a
  pure function of the rng state."""

  def __init__(self, parts: Sequence[source_base.Source], shares: Sequence[float]):
    super().__init__(parts[0].spec)
    if len(parts) != len(shares) or any(p.spec != self.spec for p in parts):
      raise ValueError('MixedSource: one share per part, parts of one WindowSpec')
    self.parts = list(parts)
    self._cumulative = np.cumsum(shares) / np.sum(shares)

  def sample(self, rng: np.random.Generator) -> np.ndarray:
    part = int(np.searchsorted(self._cumulative, rng.random(), side='right'))
    return self.parts[min(part, len(self.parts) - 1)].sample(rng)


class TurnedSource(source_base.Source):
  """Turns a share of another source's windows by a uniform random angle.

  Video codecs store fine texture as axis-aligned DCT patterns, and a restorer
  trained on codec-compressed targets learns to draw them: thin horizontal and
  vertical lines (docs/results.md). Turned windows keep the footage's scale and
  content with no preferred axis; eq. (1), codecs included, is applied afterwards,
  so the degraded input keeps its axis-aligned blocks. The inner source serves
  crops sqrt(2) larger, whose centre any turn covers. Every frame of a window turns
  by the same angle, so its motion stays physical.
  """

  def __init__(self, make_inner, spec: source_base.WindowSpec, share: float):
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


def make_source(config: ml_collections.ConfigDict, spec: source_base.WindowSpec, *,
                split: str = 'train') -> source_base.Source:
  """The source of `split` ('train' or 'validation') that `config.data` describes.

  Validation reads config.data.val_path with the same kind of source as training
  (footage when training is 'synthetic'; for 'tfds', the builder's 'validation'
  split under that data_dir), or, when val_path is empty, the held-out
  photographs (synthetic.VALIDATION_PHOTOS).
  """
  data = config.data
  if split == 'validation':
    if not data.val_path:
      return synthetic.SyntheticSource(synthetic.load_photos('validation'), spec,
                                       data.frames_per_clip)
    path = data.val_path
  elif split == 'train':
    path = data.path
  else:
    raise ValueError(f"split must be 'train' or 'validation', got {split!r}")
  if data.source == 'synthetic':
    if split == 'train':
      return synthetic.SyntheticSource(synthetic.load_photos('train'), spec,
                                       data.frames_per_clip)
    return _clip_source(data, 'footage', path, split, spec)
  clips = lambda spec: _clip_source(data, data.source, path, split, spec)
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
                 spec: source_base.WindowSpec) -> source_base.Source:
  """The source of real clips of `kind` at `path`."""
  if kind == 'footage':
    return footage.FootageSource([p for p in path.split(',') if p], spec,
                                 cache_dir=data.cache_dir, downscale=data.get('downscale', 1))
  if kind == 'tfds':
    from clarity_jax.data import tfds_builder  # pylint: disable=g-import-not-at-top  (TensorFlow, on use)
    return tfds_builder.TfdsSource(data.tfds_name, path, split, spec)
  raise ValueError(f'config.data.source: unknown source {kind!r} (synthetic, footage or tfds)')
