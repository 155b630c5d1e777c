"""The restoration engine: streaming, tiles and their blending (its reflected windows:
tests/media/test_temporal.py)."""

import itertools
import weakref

import chex
import jax
import numpy as np
import pytest

from clarity_jax import files
from clarity_jax.inference import bundle
from clarity_jax.inference import restorer
from clarity_jax.inference import tiles
from clarity_jax.media import readers


# ------------------------------------------------------------------ streaming


def test_restore_frames_streams_in_order(tiny_model, photo_windows):
  """The whole engine reads at most batch + K frames ahead of what it returns."""
  k = tiny_model.k
  r = tiny_model.restorer(tile=0, batch=3)
  windows = photo_windows(10, 16, 20)
  clip = [w[1] for w in windows]  # 10 consecutive frames
  consumed = 0
  decoded: list[weakref.ref] = []

  def source():  # fresh arrays, as a decoder hands them out
    nonlocal consumed
    for f in clip:
      consumed += 1
      frame = f.copy()
      decoded.append(weakref.ref(frame))
      yield frame
      del frame

  outputs = []
  for i, (lq, out) in enumerate(restorer.enhance_frames(r, source())):
    assert consumed - i <= r.batch + k + 1
    assert sum(ref() is not None for ref in decoded) <= r.batch + 2 * k + 1
    np.testing.assert_array_equal(lq, clip[i])
    outputs.append(out)
    del lq
  assert len(outputs) == len(clip)
  # Frame 0's window is reflected: (1, 0, 1).
  first = tiny_model.reference(np.stack([clip[1], clip[0], clip[1]])[None])[0]
  np.testing.assert_allclose(outputs[0], first, atol=1e-5)
  middle = tiny_model.reference(np.stack(clip[4:7])[None])[0]
  np.testing.assert_allclose(outputs[5], middle, atol=1e-5)


# -------------------------------------------------------------------- tiles


def test_untiled_restorer_is_the_network(tiny_model, photo_windows):
  s = tiny_model.scale
  windows = photo_windows(3, 20, 28)
  want = tiny_model.reference(windows)
  r = tiny_model.restorer(tile=0, batch=4)  # 3 windows: a short batch, padded
  got = r(windows)
  assert len(got) == 3 and all(f.shape == (s * 20, s * 28, 3) for f in got)
  assert all(f.dtype == np.float32 for f in got)
  np.testing.assert_allclose(np.stack(got), want, atol=1e-5)
  one_at_a_time = tiny_model.restorer(tile=0, batch=1)
  np.testing.assert_allclose(np.stack([one_at_a_time([w])[0] for w in windows]),
                             np.stack(got), atol=1e-5)


def _seam_profile(tiled: np.ndarray, untiled: np.ndarray) -> float:
  """The worst mean |difference| along any output row or column: a seam is a
  line of error, which a per-pixel average would dilute."""
  d = np.abs(tiled - untiled).mean(axis=-1)  # [B, H, W]
  return float(max(d.mean(axis=1).max(), d.mean(axis=2).max()))


def test_tiled_output_matches_untiled_without_seams(tiny_model, photo_windows, psnr):
  windows = photo_windows(2, 72, 100)  # larger than the 48-pixel tile both ways
  untiled = np.stack(tiny_model.restorer(tile=0, batch=2)(windows))
  # enhance's default overlap (16) on a 3x2 grid with shifted last tiles.
  tiled = np.stack(tiny_model.restorer(tile=48, tile_overlap=16, batch=2)(windows))
  assert psnr(tiled, untiled) > 45
  assert _seam_profile(tiled, untiled) < 1 / 255  # under one 8-bit level on any line
  # The same measure does see seams: tiles that merely abut (no overlap, no blend).
  abutting = np.stack(tiny_model.restorer(tile=48, tile_overlap=0, batch=2)(windows))
  assert _seam_profile(abutting, untiled) > 5 / 255
  assert psnr(abutting, untiled) < psnr(tiled, untiled) - 10


def test_uint8_output_is_the_float_output_rounded(tiny_model, photo_windows):
  """uint8 frames (a quarter of the memory) hold what files.to_uint8 makes of the
  float ones, tile rows finished band by band as in the float path."""
  windows = photo_windows(2, 72, 100)
  engine = tiny_model.restorer(tile=32, tile_overlap=8, batch=2)
  floats, small = engine(windows), engine(windows, uint8=True)
  for f, u in zip(floats, small):
    assert u.dtype == np.uint8 and u.shape == f.shape
    np.testing.assert_array_equal(u, files.to_uint8(f))


def test_one_compiled_program_per_tile_shape(tiny_model, photo_windows, monkeypatch):
  """Every tile of every batch, short batches and other frame sizes included, runs
  one program: the engine's network call, jitted afresh under a trace limit."""
  chex.clear_trace_counter()
  counted = jax.jit(chex.assert_max_traces(restorer._restore_tiles.__wrapped__, n=1),
                    static_argnames=('graphdef', 'uncertainty'))
  monkeypatch.setattr(restorer, '_restore_tiles', counted)
  windows = photo_windows(2, 72, 100)
  other = tiny_model.restorer(tile=40, tile_overlap=8, batch=2)
  other(windows)
  other(windows[:1])
  other(windows[::-1, :, :70, :90])  # another frame size, the same tile shape
  # It was traced exactly once above: a new tile shape is the second trace.
  with pytest.raises(AssertionError, match='traced > 1 times'):
    tiny_model.restorer(tile=32, tile_overlap=8, batch=2)(windows)


def test_tile_flags_are_checked(tiny_model):
  with pytest.raises(restorer.EnhanceError,
                     match='^--tile_overlap: 16 must be less than half'):
    tiny_model.restorer(tile=32, tile_overlap=16)
  with pytest.raises(restorer.EnhanceError, match='^--batch: must be >= 1, got 0'):
    tiny_model.restorer(batch=0)


def test_uncertainty_maps_leave_frames_unchanged_and_tile_seamlessly(
    tiny_model, tiny_head_model, photo_windows):
  """The same restorer weights with the head: the same frames (to float tolerance:
  another compiled program), plus a positive map per frame whose tiled blend
  matches the untiled one as the frames' does."""
  windows = photo_windows(2, 60, 80)
  plain = tiny_model.restorer(tile=0, batch=2)(windows)
  frames, maps = tiny_head_model.restorer(tile=0, batch=2).frames_and_maps(windows)
  np.testing.assert_allclose(np.stack(frames), np.stack(plain), atol=1e-6)
  assert [m.shape for m in maps] == [(120, 160)] * 2 and min(m.min() for m in maps) > 0
  tiled_frames, tiled_maps = tiny_head_model.restorer(
      tile=48, tile_overlap=16, batch=2).frames_and_maps(windows, uint8=True)
  tiled_plain = tiny_model.restorer(tile=48, tile_overlap=16, batch=2)(windows, uint8=True)
  assert np.abs(np.stack(tiled_frames).astype(int) - np.stack(tiled_plain)).max() <= 1
  # A tiled map differs from the untiled one only where tiles saw their borders.
  rel = np.abs(np.stack(tiled_maps) - np.stack(maps)) / np.stack(maps)
  assert np.median(rel) < 1e-3 and rel.max() < 0.5
  assert tiny_model.restorer(tile=0).frames_and_maps(windows[:1])[1] is None


# --------------------------------------------------- each frame encoded once


@pytest.fixture(scope='module', params=[2, 0], ids=['K=2', 'K=0'])
def feature_warping_model(request, random_params):
  """A tiny untrained network that warps encoder features (warp_features), x2."""
  spec = bundle.ModelSpec('tiny', scale=2, num_neighbors=request.param, uncertainty=True,
                          warp_features=True)
  return spec, *random_params(spec, seed=3)


@pytest.mark.parametrize('tile', [0, 40], ids=['whole', 'tiles'])
def test_encoder_cache_restores_what_each_window_restores(feature_warping_model,
                                                         shared_data, tile):
  """Every frame tile is encoded once, and the frames and maps are those of the
  network run on each whole window (the encoder in every window: no cache)."""
  spec, graphdef, params = feature_warping_model
  street = readers.open_input(shared_data / 'real_lq' / 'street_320x180')
  # 9 real frames, cropped: the cache must carry features across batches of 3.
  clip = [f[40:112, 60:188] for f in itertools.islice(next(iter(street.clips.values())), 9)]

  def restore(cache: bool):
    r = restorer.Restorer(graphdef, params, scale=2, num_neighbors=spec.num_neighbors,
                          tile=tile, tile_overlap=8, batch=3, uncertainty=True,
                          encoder_cache=cache)
    return r, list(restorer.enhance_frames_and_maps(r, clip))

  (cached, got), (plain, want) = restore(True), restore(False)
  assert plain.feature_cache is None
  th, tw = tiles.tile_length(72, tile, 8), tiles.tile_length(128, tile, 8)
  count = len(tiles.tile_starts(72, th, 8)) * len(tiles.tile_starts(128, tw, 8))
  assert cached.feature_cache.encoded == len(clip) * count
  # Memory: only the frames of the last batch of windows keep their features.
  assert len(cached.feature_cache.entries) <= 3 + 2 * spec.num_neighbors
  assert len(got) == len(want) == len(clip)
  for (_, a, a_map), (_, b, b_map) in zip(got, want):
    assert a.shape == b.shape == (144, 256, 3)
    assert np.abs(a - b).max() <= 1e-5
    assert np.abs(a_map - b_map).max() <= 1e-5


def test_a_pixel_warping_model_has_no_encoder_cache(tiny_model):
  assert tiny_model.restorer().feature_cache is None
