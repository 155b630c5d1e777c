"""The sources a config trains on (sources.py): the factory, mixed and turned sources;
frame-folder footage serves as the clip source (the windows of clip sources:
test_source_base.py; their reading and cache: test_footage.py; the synthetic
camera: test_synthetic.py)."""

import numpy as np
import pytest

from clarity_jax.data import footage
from clarity_jax.data import source_base
from clarity_jax.data import sources
from clarity_jax.data import synthetic

# -------------------------------------------------------------- dispatch


def test_make_source_by_config(tmp_path, tiny_config, coordinate_clip):
  coordinate_clip(tmp_path / 'train', 'a', 4)
  coordinate_clip(tmp_path / 'val', 'b', 4)
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


def test_photo_share_mixes_photographs_into_training_only(tmp_path, tiny_config,
                                                          coordinate_clip):
  coordinate_clip(tmp_path / 'train', 'a', 4, h=40, w=40)
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


def test_mixed_source_refuses_parts_of_different_windows(tmp_path, coordinate_clip):
  coordinate_clip(tmp_path / 'clips', 'a', 4)
  parts = [footage.FootageSource([tmp_path / 'clips'], source_base.WindowSpec(3, crop, 2),
                                 cache_dir=tmp_path / 'cache') for crop in (8, 4)]
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


def test_turn_share_wraps_training_clips_only(tmp_path, tiny_config, coordinate_clip):
  coordinate_clip(tmp_path / 'train', 'a', 4, h=60, w=60)
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
