"""Sources of sharp clips: the windows every clip source samples (source_base.py:
reflection at clip edges, aligned crops, sizes), the factory, mixed and turned
sources (sources.py); frame-folder footage serves as the clip source (its reading
and cache: test_footage.py; the synthetic camera: test_synthetic.py)."""

import pathlib

import numpy as np
import pytest

from clarity_jax.data import footage
from clarity_jax.data import source_base
from clarity_jax.data import sources
from clarity_jax.data import synthetic
from clarity_jax.media import frames
from clarity_jax.media import temporal

# ------------------------------------------------------------------ helpers


def coordinate_frame(h: int, w: int, value: float) -> np.ndarray:
  """R = x / 255, G = y / 255, B = value: a crop tells exactly where it came from."""
  ys, xs = np.mgrid[0:h, 0:w]
  return np.stack([xs / 255.0, ys / 255.0, np.full((h, w), value)], -1).astype(np.float32)


def write_clip(root: pathlib.Path, name: str, n: int, h: int = 20, w: int = 24,
               base: int = 0) -> list:
  """Frame i of the clip has B = (base + 10 * i + 10) / 255."""
  (root / name).mkdir(parents=True)
  out = []
  for i in range(n):
    img = coordinate_frame(h, w, (base + 10 * i + 10) / 255.0)
    frames.write_image(root / name / f'{i:04d}.png', img)
    out.append(img)
  return out


def clip_source(root: pathlib.Path, spec: source_base.WindowSpec) -> footage.FootageSource:
  """The frame folders under `root`, cached beside it (never in it)."""
  return footage.FootageSource([root], spec, cache_dir=root.parent / 'cache')


def frame_ids(window: np.ndarray, base: int = 0) -> list[int]:
  """The frame index each window frame came from (see write_clip)."""
  return [(int(round(v * 255.0)) - base) // 10 - 1 for v in window[:, 0, 0, 2]]


# ------------------------------------------------------------ window indices


@pytest.mark.parametrize('length', [2, 3, 5, 8])
def test_reflect_indices_match_numpy_reflect_padding(length):
  pad = 3 * length
  reference = np.pad(np.arange(length), pad, mode='reflect')  # index -pad .. length+pad-1
  indices = np.arange(-pad, length + pad)
  np.testing.assert_array_equal(temporal.reflect_indices(indices, length), reference)


def test_reflect_indices_single_frame_clip():
  np.testing.assert_array_equal(temporal.reflect_indices(np.arange(-3, 4), 1), np.zeros(7))


def test_window_offsets():
  np.testing.assert_array_equal(source_base.WindowSpec(5, 8).offsets, [-2, -1, 0, 1, 2])
  np.testing.assert_array_equal(source_base.WindowSpec(6, 8).offsets, [-2, -1, 0, 1, 2, 3])
  np.testing.assert_array_equal(source_base.WindowSpec(1, 8).offsets, [0])


# ------------------------------------------------------------ clip windows


def test_clip_windows_are_consecutive_and_crops_aligned(tmp_path):
  write_clip(tmp_path / 'clips', 'a', 9, h=20, w=24)
  spec = source_base.WindowSpec(num_frames=5, crop=8, align=4)
  src = clip_source(tmp_path / 'clips', spec)
  assert src.names == ['a'] and list(src.lengths) == [9] and src.sizes == [(20, 24)]
  origins = set()
  for i in range(24):
    window = src.sample(np.random.default_rng([7, i]))
    assert window.shape == (5, 8, 8, 3) and window.dtype == np.float32
    ids = frame_ids(window)
    centre = ids[2]
    np.testing.assert_array_equal(ids, temporal.reflect_indices(centre + np.arange(-2, 3), 9))
    x0, y0 = (int(round(v * 255)) for v in window[0, 0, 0, :2])
    assert x0 % 4 == 0 and y0 % 4 == 0
    # Every frame is the same crop of the same place.
    expected = coordinate_frame(20, 24, 0)[y0:y0 + 8, x0:x0 + 8, :2]
    np.testing.assert_allclose(window[..., :2], np.broadcast_to(expected, (5, 8, 8, 2)),
                               atol=1e-6)
    origins.add((y0, x0))
  assert len(origins) > 3  # random crops, not one fixed place


def test_short_clip_is_reflected_and_warns_once(tmp_path):
  root = tmp_path / 'clips'
  write_clip(root, 'long', 6)
  write_clip(root, 'short', 2, base=150)
  spec = source_base.WindowSpec(num_frames=5, crop=8, align=2)
  with pytest.warns(source_base.ShortClipWarning, match=r'short.*2 frames.*5-frame') as record:
    src = clip_source(root, spec)
  assert len(record) == 1 and str(root / 'short') in str(record[0].message)
  seen = set()
  for i in range(40):
    window = src.sample(np.random.default_rng([1, i]))
    if window[0, 0, 0, 2] > 150 / 255:  # from the 2-frame clip
      seen.add(tuple(frame_ids(window, base=150)))
  # Reflection without repeating the edge frame: 0 1 0 1 0 or 1 0 1 0 1.
  assert seen == {(0, 1, 0, 1, 0), (1, 0, 1, 0, 1)}


def test_frames_smaller_than_crop_name_the_clip(tmp_path):
  write_clip(tmp_path / 'clips', 'tiny', 3, h=12, w=12)
  with pytest.raises(source_base.ClipError,
                     match=r'^' + str(tmp_path / 'clips' / 'tiny') + r': .*12x12'):
    clip_source(tmp_path / 'clips', source_base.WindowSpec(3, 16))


# -------------------------------------------------------------- dispatch


def test_make_source_by_config(tmp_path, tiny_config):
  write_clip(tmp_path / 'train', 'a', 4)
  write_clip(tmp_path / 'val', 'b', 4)
  cfg = tiny_config(**{'data.source': 'footage', 'data.path': str(tmp_path / 'train'),
                       'data.val_path': str(tmp_path / 'val'),
                       'data.cache_dir': str(tmp_path / 'cache')})
  spec = source_base.WindowSpec(3, 8, 2)
  assert sources.make_source(cfg, spec).names == ['a']
  assert sources.make_source(cfg, spec, split='validation').names == ['b']
  # The synthetic camera validates on held-out footage the same way.
  cfg.data.source = 'synthetic'
  held_out = sources.make_source(cfg, spec, split='validation')
  assert isinstance(held_out, footage.FootageSource) and held_out.names == ['b']
  cfg.data.val_path = ''
  assert isinstance(sources.make_source(cfg, spec, split='validation'), synthetic.SyntheticSource)
  cfg.data.source = 'nope'
  with pytest.raises(ValueError, match='config.data.source'):
    sources.make_source(cfg, spec)
  assert sorted(p.name for p in (tmp_path / 'train' / 'a').iterdir()) == [
      f'{i:04d}.png' for i in range(4)]  # nothing written beside the frames


def test_photo_share_mixes_photographs_into_training_only(tmp_path, tiny_config):
  write_clip(tmp_path / 'train', 'a', 4, h=40, w=40)
  cfg = tiny_config(**{'data.source': 'footage', 'data.path': str(tmp_path / 'train'),
                       'data.val_path': str(tmp_path / 'train'), 'data.photo_share': 0.25,
                       'data.cache_dir': str(tmp_path / 'cache')})
  spec = source_base.WindowSpec(3, 16, 2)
  mixed = sources.make_source(cfg, spec)
  assert isinstance(mixed, sources.MixedSource)
  assert [type(p) for p in mixed.parts] == [footage.FootageSource, synthetic.SyntheticSource]
  assert isinstance(sources.make_source(cfg, spec, split='validation'),
                    footage.FootageSource)
  # A clip window has B = a multiple of 10/255 in every pixel; a photograph does not.
  from_clip = []
  for seed in range(400):
    window = mixed.sample(np.random.default_rng(seed))
    assert window.shape == (3, 16, 16, 3)
    np.testing.assert_array_equal(window, mixed.sample(np.random.default_rng(seed)))
    from_clip.append(bool(np.all(np.abs(window[..., 2] * 25.5 - np.round(window[..., 2] * 25.5))
                                 < 1e-4)))
  # 400 draws at p = 0.75: binomial sd 8.7, so +-35 is four sd.
  assert abs(sum(from_clip) - 300) < 35


def test_mixed_source_refuses_parts_of_different_windows(tmp_path):
  write_clip(tmp_path / 'clips', 'a', 4)
  parts = [clip_source(tmp_path / 'clips', source_base.WindowSpec(3, 8, 2)),
           clip_source(tmp_path / 'clips', source_base.WindowSpec(3, 4, 2))]
  with pytest.raises(ValueError, match='one WindowSpec'):
    sources.MixedSource(parts, [0.5, 0.5])


class _Stripes(source_base.Source):
  """Every frame: horizontal stripes of period 16 px (gradients along y only); the
  rng is not consumed, so the turn's angle is the rng's second draw."""

  def sample(self, rng):
    del rng
    ys = np.arange(self.spec.crop, dtype=np.float32)[:, None]
    frame = 0.5 + 0.4 * np.sin(2 * np.pi * ys / 16.0) * np.ones((1, self.spec.crop))
    return np.repeat(np.repeat(frame[None, ..., None], 3, -1), self.spec.num_frames, 0)


def _gradient_angle(image: np.ndarray) -> float:
  """Dominant gradient direction in degrees [0, 180), x right and y up (structure tensor)."""
  gy, gx = np.gradient(image.mean(-1))
  gy = -gy  # rows grow downwards
  jxx, jyy, jxy = np.mean(gx * gx), np.mean(gy * gy), np.mean(gx * gy)
  return float(np.degrees(0.5 * np.arctan2(2 * jxy, jxx - jyy)) % 180)


def test_turned_windows_turn_every_frame_by_the_drawn_angle():
  spec = source_base.WindowSpec(3, 64, 4)
  turned = sources.TurnedSource(lambda s: _Stripes(s), spec, 1.0)
  assert turned.inner.spec.crop >= 64 * np.sqrt(2) and turned.inner.spec.crop % 4 == 0
  for seed in range(5):
    window = turned.sample(np.random.default_rng(seed))
    assert window.shape == (3, 64, 64, 3)
    np.testing.assert_array_equal(window, turned.sample(np.random.default_rng(seed)))
    np.testing.assert_array_equal(window[0], window[2])  # one angle for the window
    rng = np.random.default_rng(seed)
    rng.random()
    degrees = rng.uniform(0.0, 90.0)
    # Counter-clockwise as displayed: the stripes' gradient (90 degrees) turns with them.
    assert abs((_gradient_angle(window[1]) - (90 + degrees) + 90) % 180 - 90) < 1.0


def test_unturned_windows_are_the_inner_centre():
  spec = source_base.WindowSpec(3, 64, 4)
  turned = sources.TurnedSource(lambda s: _Stripes(s), spec, 0.0)
  inner = turned.inner.sample(np.random.default_rng(0))
  o = (turned.inner.spec.crop - 64) // 2
  np.testing.assert_array_equal(turned.sample(np.random.default_rng(0)),
                                inner[:, o:o + 64, o:o + 64])


def test_turn_share_wraps_training_clips_only(tmp_path, tiny_config):
  write_clip(tmp_path / 'train', 'a', 4, h=60, w=60)
  cfg = tiny_config(**{'data.source': 'footage', 'data.path': str(tmp_path / 'train'),
                       'data.val_path': str(tmp_path / 'train'), 'data.turn_share': 0.5,
                       'data.photo_share': 0.2, 'data.cache_dir': str(tmp_path / 'cache')})
  spec = source_base.WindowSpec(3, 16, 2)
  mixed = sources.make_source(cfg, spec)
  assert isinstance(mixed, sources.MixedSource) and isinstance(mixed.parts[0], sources.TurnedSource)
  assert isinstance(mixed.parts[0].inner, footage.FootageSource)
  assert mixed.parts[0].inner.spec.crop == 26  # ceil(16 sqrt(2)) + 2, rounded up to 2
  assert isinstance(sources.make_source(cfg, spec, split='validation'),
                    footage.FootageSource)
