"""The restoration engine: frames of any length and size through a fixed-shape network.

How a frame of any length of video and any size is restored:
  - time: a sliding window of 2K+1 frames with reflected edges (frame 0 sees
    frames 2,1,0,1,2 for K=2), so the output has exactly as many frames as the
    input; only a ring buffer of 2K+1 decoded frames is kept, so memory does not
    grow with the video's length (frames are read, restored and written as they go);
  - space: overlapping tiles of at most `tile` LQ pixels, as few as that allows and
    no longer than needed (tile_length), all of the same shape (the last row and
    column of tiles are shifted back inside the frame rather than padded),
    so jit compiles once per video; tiles are cross-faded with raised-cosine
    ramps in the middle of each overlap (the quarter nearest a tile's edge, which
    saw the tile's artificial border, is dropped), so no seam is visible;
  - throughput: `batch` windows go through the network at once and the next tile
    is dispatched before the previous one is copied back.

enhance.py streams files through it; evaluation restores its clips with it.
"""

from __future__ import annotations

import collections
import functools
import itertools
import os
from typing import Any, Callable, Iterable, Iterator, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from clarity_jax import errors
from clarity_jax import files
from clarity_jax.inference import bundle as bundle_lib
from clarity_jax.inference import engines
from clarity_jax.inference import tiles
from clarity_jax.media import temporal


class EnhanceError(errors.PathError):
  """Flags or paths that cannot work together: '<flag or path>: <what>'."""


# ------------------------------------------------------------------ the engine


def _tiles(out: Any, uncertainty: bool) -> jax.Array:
  """The model's output as restored tiles: clipped colours, and with `uncertainty`
  a 4th channel, the head's error scale b (blended across tiles like the colours)."""
  if not uncertainty:
    return jnp.clip(out, 0.0, 1.0)
  restored, scale = out
  return jnp.concatenate([jnp.clip(restored, 0.0, 1.0), scale[..., None]], axis=-1)


# Module-level, keyed by the graph: every Restorer of a model shares the compiled
# programs.
@functools.partial(jax.jit, static_argnames=('graphdef', 'uncertainty'))
def _restore_tiles(params: Any, lq: jax.Array, *, graphdef: nnx.GraphDef,
                   uncertainty: bool = False) -> jax.Array:
  """One batch of tiles through the network: [B, s h, s w, 3 or 4] (_tiles)."""
  model = nnx.merge(graphdef, params)
  return _tiles(model.with_uncertainty(lq) if uncertainty else model(lq), uncertainty)


@functools.partial(jax.jit, static_argnames=('graphdef',))
def _encode_tiles(params: Any, frames: jax.Array, *, graphdef: nnx.GraphDef) -> jax.Array:
  """Tiles of frames [N, h, w, 3] -> their encoder features (warp_features models)."""
  return nnx.merge(graphdef, params).encode_frames(frames)


@functools.partial(jax.jit, static_argnames=('graphdef', 'uncertainty'))
def _restore_encoded_tiles(params: Any, lq: jax.Array, feats: jax.Array, *,
                           graphdef: nnx.GraphDef, uncertainty: bool = False) -> jax.Array:
  """_restore_tiles from the window's cached features: the encoder does not run."""
  model = nnx.merge(graphdef, params)
  return _tiles(model.restore_encoded(lq, feats, uncertainty), uncertainty)


class _FeatureCache:
  """Encoder features per frame and tile, for the windows of one batch and the next.

  Consecutive windows share 2K of their 2K+1 frames; a model that warps features
  (warp_features) encodes each frame the same in every window, so each frame tile
  is encoded once. Frames are known by identity: sliding_windows hands every window
  references to the same decoded arrays. Each entry holds its frame, so an identity
  cannot be reused while its features are kept, and only the frames of the latest
  batch are kept: the features of at most batch + 2K frames.
  """

  def __init__(self, encode: Callable[[np.ndarray], Any], chunk: int):
    self.encode, self.chunk = encode, chunk
    self.entries: dict[int, tuple[np.ndarray, dict[tuple[int, int], Any]]] = {}
    self.encoded = 0  # frame tiles encoded (tests and benchmarks count them)

  def start_batch(self, frames: list[np.ndarray]) -> None:
    """Forgets every frame that the batch about to be restored does not use."""
    keep = {id(f) for f in frames}
    self.entries = {k: v for k, v in self.entries.items() if k in keep}
    for f in frames:
      self.entries.setdefault(id(f), (f, {}))

  def window_features(self, windows: Sequence[Sequence[np.ndarray]], y: int, x: int,
                      th: int, tw: int) -> list[list[Any]]:
    """Each window's per-frame features of the tile at (y, x), encoding the missing
    ones at most `chunk` tiles at a time."""
    missing = list({id(f): f for win in windows for f in win
                    if (y, x) not in self.entries[id(f)][1]}.values())
    for i in range(0, len(missing), self.chunk):
      part = missing[i:i + self.chunk]
      feats = self.encode(np.stack([f[y:y + th, x:x + tw] for f in part]).astype(np.float32))
      for j, f in enumerate(part):
        self.entries[id(f)][1][(y, x)] = feats[j]
      self.encoded += len(part)
    return [[self.entries[id(f)][1][(y, x)] for f in win] for win in windows]


class Restorer:
  """Restores batches of windows of any size with one compiled program per shape.

  Tiles are cut from the frames of each window as they are needed (a [batch,
  2K+1, tile, tile, 3] array at a time), so the only full-size arrays are the
  decoded frames and one float32 accumulator per restored frame. The weight sum
  of a tile grid is separable (a product of per-axis sums), so blending needs
  two 1-D normalisers instead of a full-frame weight map.
  """

  def __init__(self, graphdef: nnx.GraphDef, params: Any, *, scale: int,
               num_neighbors: int, tile: int = 256, tile_overlap: int = 16, batch: int = 4,
               uncertainty: bool = False, engine: engines.OnnxEngine | None = None,
               encoder_cache: bool = True):
    if tile and not 2 * tile_overlap < tile:
      raise EnhanceError(f'--tile_overlap: {tile_overlap} must be less than half of '
                         f'--tile ({tile})')
    if batch < 1:
      raise EnhanceError(f'--batch: must be >= 1, got {batch}')
    self.scale, self.num_neighbors = scale, num_neighbors
    self.tile, self.tile_overlap, self.batch = tile, tile_overlap, batch
    self.graphdef = graphdef
    self.uncertainty = uncertainty  # also restore the head's error-scale maps
    self.params = jax.device_put(params)
    # Another runtime's tiles (engines.py), or None: the JAX model's.
    self.engine = engine
    self._weights: dict[tuple[int, int], Any] = {}
    # Each frame encoded once, where the model warps encoder features (and the
    # engine runs the encoder apart): the same output, the encoder's work / (2K+1).
    warps_features = (nnx.merge(graphdef, params).warp_features if engine is None
                      else engine.encodes_apart)
    self.feature_cache = (_FeatureCache(self._encode, batch)
                          if encoder_cache and warps_features else None)

  @classmethod
  def from_bundle(cls, path: str | os.PathLike, dtype: str = 'float32',
                  uncertainty: bool = False, engine: str = 'jax', threads: int = 0,
                  **kwargs
                  ) -> tuple['Restorer', bundle_lib.BundleInfo]:
    """A restorer of a bundle's model; with `uncertainty`, one that also maps the
    error scale (a bundle without the head is refused in one line). `engine`: 'jax',
    or a runtime of engines.ENGINES running the bundle's ONNX graph, computing in
    `dtype` where it can (engines.PRECISIONS), on `threads` cores (0: all); other
    keyword arguments go to Restorer (tile, tile_overlap, batch, encoder_cache)."""
    if uncertainty and not bundle_lib.read_info(path).model.uncertainty:
      raise bundle_lib.BundleError(
          path, 'has no uncertainty head (trained without config.model.uncertainty); '
          'add one: configs/uncertainty_head.py, or drop --uncertainty')
    if engine == 'jax' and dtype == 'int8':
      raise EnhanceError('--dtype', "int8 runs on --engine=openvino, on the bundle's int8 "
                         'ONNX graph (export --int8_calibration)')
    graphdef, params, info = bundle_lib.load_params(path, 'float32' if engine != 'jax'
                                                    else dtype)
    runtime = (None if engine == 'jax' else
               engines.OnnxEngine(path, info, engine, uncertainty=uncertainty,
                                  precision=dtype, threads=threads))
    return cls(graphdef, params, scale=info.model.scale,
               num_neighbors=info.model.num_neighbors, uncertainty=uncertainty,
               engine=runtime, **kwargs), info

  def tile_shape(self, h: int, w: int) -> tuple[int, int]:
    """The one tile shape of h x w frames (tile_length per axis)."""
    return (tiles.tile_length(h, self.tile, self.tile_overlap),
            tiles.tile_length(w, self.tile, self.tile_overlap))

  def __call__(self, windows: Sequence[Sequence[np.ndarray]], uint8: bool = False
               ) -> list[np.ndarray]:
    """Restores up to `batch` windows (each 2K+1 float [h, w, 3] frames in [0, 1],
    e.g. a [n, 2K+1, h, w, 3] array) -> n [s h, s w, 3] frames: float32 in [0, 1],
    or with `uint8` rounded to uint8, a quarter of the memory (what files hold)."""
    return self.frames_and_maps(windows, uint8)[0]

  def frames_and_maps(self, windows: Sequence[Sequence[np.ndarray]], uint8: bool = False
              ) -> tuple[list[np.ndarray], list[np.ndarray] | None]:
    """(frames, maps) for up to `batch` windows, as __call__; maps are the error
    scale b [s h, s w] float32 of each frame with `uncertainty`, else None.

    Each restored frame is its own array, so a caller holding one frame does not
    keep a whole batch alive. Tiles are blended into a float32 band one tile row
    high, and rows no later tile reaches are finished as the band moves down: the
    float working memory follows the tile, not the frame.
    """
    n, t = len(windows), len(windows[0])
    h, w = windows[0][0].shape[:2]
    if not 0 < n <= self.batch or t != 2 * self.num_neighbors + 1:
      raise ValueError(f'Restorer: want 1..{self.batch} windows of '
                       f'{2 * self.num_neighbors + 1} frames, got {n} of {t}')
    # A short last batch repeats its last window: the same shape, no recompilation.
    # Windows become tuples of frames once: the encoder cache knows frames by identity,
    # and each iteration over an array window would make new views.
    padded = [tuple(win) for win in windows] + [tuple(windows[-1])] * (self.batch - n)
    if self.feature_cache is not None:
      self.feature_cache.start_batch([f for win in padded for f in win])
    th, tw = self.tile_shape(h, w)
    if (h, w) not in self._weights:
      self._weights[(h, w)] = (tiles.axis_weights(h, th, self.tile_overlap, self.scale),
                               tiles.axis_weights(w, tw, self.tile_overlap, self.scale))
    (ys, ramps_y, norm_y), (xs, ramps_x, norm_x) = self._weights[(h, w)]
    size = (self.scale * h, self.scale * w)
    band = _Band([np.empty(size + (3,), np.uint8 if uint8 else np.float32)
                  for _ in range(n)],
                 [np.empty(size, np.float32) for _ in range(n)] if self.uncertainty else None,
                 self.scale * th, norm_y, norm_x)
    pending = collections.deque()
    for (y, ry), (x, rx) in itertools.product(zip(ys, ramps_y), zip(xs, ramps_x)):
      lq = np.stack([np.stack([f[y:y + th, x:x + tw] for f in win]) for win in padded])
      feats = (None if self.feature_cache is None else
               self.feature_cache.window_features(padded, y, x, th, tw))
      # Dispatch is asynchronous: this tile computes while the last one is blended.
      pending.append((y, x, ry, rx, self._restore(lq.astype(np.float32), feats)))
      if len(pending) > 1:
        band.add(self.scale, *pending.popleft())
    while pending:
      band.add(self.scale, *pending.popleft())
    band.finish()
    return band.frames, band.maps

  def _restore(self, lq: np.ndarray, feats: list[list[Any]] | None = None) -> Any:
    """Restored tiles of lq [B, 2K+1, h, w, 3]; with `feats`, from the windows'
    cached encoder features (per window, per frame)."""
    if feats is not None:
      if self.engine is not None:
        return self.engine.restore_encoded(lq, feats)
      return _restore_encoded_tiles(self.params, lq, jnp.stack([jnp.stack(w) for w in feats]),
                                    graphdef=self.graphdef, uncertainty=self.uncertainty)
    if self.engine is not None:
      return self.engine(lq)
    return _restore_tiles(self.params, lq, graphdef=self.graphdef,
                          uncertainty=self.uncertainty)

  def _encode(self, tiles: np.ndarray) -> Any:
    """Features of up to `batch` frame tiles. JAX gets `batch` always (one compiled
    shape: a short chunk repeats its last tile); the ONNX engines encode tile by tile,
    so they get only the real ones."""
    if self.engine is not None:
      return self.engine.encode(tiles)
    n = len(tiles)
    full = np.concatenate([tiles, np.repeat(tiles[-1:], self.batch - n, 0)])
    return _encode_tiles(self.params, full, graphdef=self.graphdef)[:n]


class _Band:
  """The float32 accumulator of the tile row being blended, over full-size outputs.

  Tiles come row by row (y never decreases); when a row starts at output row r,
  rows above r are complete: normalised by the separable weight sums, converted to
  the output's dtype and copied out, and the band moves down to start at r. With
  `maps`, tiles carry a 4th channel, finished into the maps.
  """

  def __init__(self, frames: list[np.ndarray], maps: list[np.ndarray] | None,
               height: int, norm_y: np.ndarray, norm_x: np.ndarray):
    self.frames, self.maps, self.height = frames, maps, height
    self.norm_y, self.norm_x = norm_y, norm_x
    self.top = 0
    channels = 3 if maps is None else 4
    self.acc = [np.zeros((0, f.shape[1], channels), np.float32) for f in frames]

  def add(self, s: int, y: int, x: int, ry: np.ndarray, rx: np.ndarray,
          restored: jax.Array) -> None:
    self._flush(s * y)
    tiles = np.asarray(restored)
    th, tw = tiles.shape[1:3]
    if self.acc[0].shape[0] < th:
      grow = th - self.acc[0].shape[0]
      self.acc = [np.concatenate([a, np.zeros((grow,) + a.shape[1:], np.float32)])
                  for a in self.acc]
    weight = ry[:, None, None] * rx[None, :, None]
    for acc, tile in zip(self.acc, tiles):  # padded windows beyond the frames are dropped
      acc[:th, s * x:s * x + tw] += tile * weight

  def finish(self) -> None:
    self._flush(self.frames[0].shape[0])

  def _flush(self, row: int) -> None:
    """Finishes output rows [top, row) and moves the band to start at `row`."""
    if row <= self.top:
      return
    k = row - self.top
    for i, (frame, acc) in enumerate(zip(self.frames, self.acc)):
      done = acc[:k]
      done *= self.norm_y[self.top:row, None, None]
      done *= self.norm_x[None, :, None]
      rgb = done[..., :3]
      frame[self.top:row] = files.to_uint8(rgb) if frame.dtype == np.uint8 else rgb
      if self.maps is not None:
        self.maps[i][self.top:row] = done[..., 3]
    self.acc = [a[k:] for a in self.acc]
    self.top = row


def enhance_frames_and_maps(restorer: Restorer, frames: Iterable[np.ndarray],
                            start: int = 0, uint8: bool = False
                            ) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray | None]]:
  """(LQ frame, restored frame, error-scale map or None) for every input frame from
  `start` on, in order, streaming (restored frames in uint8 with `uint8`; maps with
  restorer.uncertainty). Earlier frames are read (they are the first windows'
  neighbours) but not restored: a resumed job gives the frames an uninterrupted
  one would."""
  k = restorer.num_neighbors

  def run(batch):
    restored, maps = restorer.frames_and_maps(batch, uint8)
    return zip((w[k] for w in batch), restored, maps or [None] * len(batch))

  batch: list[tuple[np.ndarray, ...]] = []
  for t, window in enumerate(temporal.sliding_windows(frames, k)):
    if t < start:
      continue
    batch.append(window)
    if len(batch) == restorer.batch:
      yield from run(batch)
      batch = []
  if batch:
    yield from run(batch)


def enhance_frames(restorer: Restorer, frames: Iterable[np.ndarray], start: int = 0,
                   uint8: bool = False) -> Iterator[tuple[np.ndarray, np.ndarray]]:
  """(LQ frame, restored frame) for every input frame: enhance_frames_and_maps
  without the maps."""
  for lq, restored, _ in enhance_frames_and_maps(restorer, frames, start, uint8):
    yield lq, restored
