"""tools/degrade and `python -m clarity_jax.degrade`: layout, reproducibility from the
sidecar, the default ranges, bad input."""

import filecmp
import json
import os
import signal
from pathlib import Path
import subprocess
import sys
import time

import cv2
import ml_collections
import numpy as np
from PIL import Image
import pytest
from skimage import data as skdata

from clarity_jax import files
from clarity_jax.data import degradation_config
from clarity_jax.data import degradations
from clarity_jax.media import frames
from clarity_jax.tools import degrade


def _run(*args: str, cwd: Path) -> subprocess.CompletedProcess:
  return subprocess.run([sys.executable, '-m', 'clarity_jax.degrade', *args], cwd=cwd,
                        capture_output=True, text=True, timeout=120)


def _photo_clip(folder: Path, n: int, h: int, w: int, ext: str = '.png', y0: int = 0) -> None:
  """n frames of a real photograph panning right: a tiny sharp HR clip."""
  folder.mkdir(parents=True)
  photo = skdata.chelsea()  # 300 x 451 RGB
  for i in range(n):
    frames.write_image(folder / f'{i:04d}{ext}', photo[y0:y0 + h, 3 * i:3 * i + w],
                       jpeg_quality=98)


def _cropped_hr(clip: Path, record: dict) -> tuple[list[Path], np.ndarray]:
  """(frame paths, [T, h, w, 3] frames) of an HR clip, cropped as its sidecar record says."""
  paths = sorted(clip.iterdir())
  hc, wc = record['cropped_hr_size'] or record['hr_size']
  return paths, np.stack([frames.read_image(p)[:hc, :wc] for p in paths])


@pytest.fixture
def default_ranges():
  """The command's default degradation ranges, as degrade_tree takes them."""
  return degradation_config.get_config()


@pytest.fixture
def hr_tree(tmp_path) -> Path:
  root = tmp_path / 'hr'
  _photo_clip(root / 'cat', 5, 48, 64)
  _photo_clip(root / 'odd', 4, 30, 42, y0=100)  # not multiples of 4: cropped to 28 x 40
  return root


def test_the_default_ranges_are_those_training_uses(load_config):
  """The command's --config default (tools/degrade.py read as a config file) is the
  package's degradation model, the one configs/default.py trains with."""
  default = degrade.get_config()
  assert set(default) == {'degradation'}
  assert default.degradation.to_dict() == load_config('').degradation.to_dict()


def test_cli_writes_a_reproducible_tree(hr_tree, tmp_path, default_ranges):
  out1, out2, out3 = tmp_path / 'lq1', tmp_path / 'lq2', tmp_path / 'lq3'
  for out in (out1, out2):
    # Run outside the checkout: the defaults come from the package, not configs/.
    r = _run(f'--input={hr_tree}', f'--output={out}', '--scale=4', '--seed=0', cwd=tmp_path)
    assert r.returncode == 0, r.stderr
  cfg = degrade.with_codec(default_ranges, 'libx264')
  degrade.degrade_tree(hr_tree, out3, 4, 1, cfg)  # the same in-process, another seed
  assert sorted(p.name for p in out1.iterdir()) == ['cat', 'degradation.json', 'odd']
  assert sorted(p.name for p in (out1 / 'cat').iterdir()) == [f'{i:04d}.png' for i in range(5)]
  assert Image.open(out1 / 'cat' / '0000.png').size == (16, 12)
  assert Image.open(out1 / 'odd' / '0000.png').size == (10, 7)
  same = filecmp.dircmp(out1, out2)
  assert not same.diff_files and all(not filecmp.dircmp(out1 / c, out2 / c).diff_files
                                     for c in ('cat', 'odd'))
  assert (out1 / 'cat' / '0000.png').read_bytes() != (out3 / 'cat' / '0000.png').read_bytes()
  sidecar = json.loads((out1 / 'degradation.json').read_text())
  assert (sidecar['seed'], sidecar['scale'], sidecar['codec']) == (0, 4, 'libx264')
  assert sidecar['version'] == files.package_version() and sidecar['layout'] == 'clips'
  odd = sidecar['clips']['odd']
  assert odd['hr_size'] == [30, 42] and odd['cropped_hr_size'] == [28, 40]
  assert odd['lq_size'] == [7, 10] and sidecar['clips']['cat']['cropped_hr_size'] is None
  assert odd['params']['video']['codec'] == 'libx264'
  assert odd['params']['num_frames'] == 4  # the whole clip is one window
  assert sidecar['degradation_config'] == json.loads(json.dumps(cfg.to_dict()))
  assert not list(tmp_path.glob('lq1/.*'))  # no temporary folders left


def test_config_flag_overrides_the_ranges(hr_tree, tmp_path, repo):
  """--config.degradation.FIELD overrides the default ranges, and --config=FILE takes
  a training config's instead."""
  out = tmp_path / 'lq'
  r = _run(f'--input={hr_tree}', f'--output={out}', '--scale=4', '--codec=none',
           '--config.degradation.noise_prob=0', '--config.degradation.drift=0.05', cwd=tmp_path)
  assert r.returncode == 0, r.stderr
  sidecar = json.loads((out / 'degradation.json').read_text())
  assert sidecar['codec'] == 'none' and sidecar['degradation_config']['video_codec_prob'] == 0
  assert sidecar['degradation_config']['noise_prob'] == 0
  assert sidecar['degradation_config']['drift'] == 0.05
  assert all(c['params']['noise'] is None for c in sidecar['clips'].values())
  r = _run(f'--input={hr_tree}', f'--output={out}', '--scale=4',
           f'--config={repo / "configs" / "default.py"}:runlocal',
           '--config.degradation.jpeg_prob=0.25', cwd=tmp_path)
  assert r.returncode == 0, r.stderr
  sidecar = json.loads((out / 'degradation.json').read_text())
  assert sidecar['degradation_config']['jpeg_prob'] == 0.25
  assert sidecar['degradation_config']['noise_prob'] == 0.8


def test_sidecar_parameters_rebuild_the_frames(hr_tree, tmp_path, default_ranges):
  """Sidecar params + the clip's seeded noise stream reproduce every written byte."""
  cfg = degrade.with_codec(default_ranges, 'libx264')
  sidecar = degrade.degrade_tree(hr_tree, tmp_path / 'lq', 4, 5, cfg)
  for clip in ('cat', 'odd'):
    record = json.loads((tmp_path / 'lq' / 'degradation.json').read_text())['clips'][clip]
    assert record == sidecar['clips'][clip]
    paths, hr = _cropped_hr(hr_tree / clip, record)
    rng = degrade.clip_rng(5, clip)
    assert degradations.sample_window_params(rng, cfg, len(paths), 4) == record['params']
    lq = degradations.apply_window(hr, record['params'], 4, rng)
    for t, p in enumerate(paths):
      written = np.asarray(Image.open(tmp_path / 'lq' / clip / p.name))
      np.testing.assert_array_equal(written, files.to_uint8(lq[t]))


def test_camera_effects_round_trip_through_the_sidecar(hr_tree, tmp_path):
  """--low_light --rolling_shutter: every clip gets both, the sidecar records their
  parameters (and the config), and those alone, with the clip's seeded stream,
  rebuild every written byte; without the flags both are off (null)."""
  r = _run(f'--input={hr_tree}', f'--output={tmp_path / "lq"}', '--scale=2', '--seed=3',
           '--codec=none', '--low_light', '--rolling_shutter', cwd=tmp_path)
  assert r.returncode == 0, r.stderr
  sidecar = json.loads((tmp_path / 'lq' / 'degradation.json').read_text())
  cfg = ml_collections.ConfigDict(sidecar['degradation_config'])
  assert cfg.low_light_prob == 1.0 and cfg.rolling_shutter_prob == 1.0
  for clip, record in sidecar['clips'].items():
    params = record['params']
    assert params['rolling_shutter']['method'] == 'blend' and params['noise'] is None
    assert len(params['low_light']['frames']) == params['num_frames']
    paths, hr = _cropped_hr(hr_tree / clip, record)
    rng = degrade.clip_rng(3, clip)
    assert degradations.sample_window_params(rng, cfg, len(paths), 2) == params
    lq = degradations.apply_window(hr, params, 2, rng)
    plain = degradations.apply_window(hr, dict(params, low_light=None, rolling_shutter=None), 2,
                                      np.random.default_rng(0))
    assert lq.mean() < plain.mean() - 0.05  # low light: darker
    for t, p in enumerate(paths):
      written = np.asarray(Image.open(tmp_path / 'lq' / clip / p.name))
      np.testing.assert_array_equal(written, files.to_uint8(lq[t]))
  off = degrade.degrade_tree(hr_tree, tmp_path / 'off', 2, 3,
                             degrade.with_codec(degradation_config.get_config(), 'none'))
  assert all(c['params']['low_light'] is None and c['params']['rolling_shutter'] is None
             for c in off['clips'].values())


def test_codec_none_and_converted_inputs(tmp_path, default_ranges):
  """Grayscale, RGBA and 16-bit frames are converted; --codec=none skips the codec."""
  clip = tmp_path / 'hr' / 'mixed_formats'
  clip.mkdir(parents=True)
  rgb = skdata.astronaut()[:32, :48]
  Image.fromarray(rgb[..., 0]).save(clip / '0.png')
  Image.fromarray(np.dstack([rgb, rgb[..., :1]])).save(clip / '1.png')
  cv2.imwrite(str(clip / '2.png'), rgb[..., ::-1].astype(np.uint16) * 257)
  cfg = degrade.with_codec(default_ranges, 'none')
  sidecar = degrade.degrade_tree(tmp_path / 'hr', tmp_path / 'lq', 2, 0, cfg)
  assert sidecar['codec'] == 'none'
  assert sidecar['clips']['mixed_formats']['params']['video'] is None
  for name in ('0.png', '1.png', '2.png'):
    out = Image.open(tmp_path / 'lq' / 'mixed_formats' / name)
    assert out.mode == 'RGB' and out.size == (24, 16)


def test_real_footage_as_hr(shared_data, tmp_path):
  src = shared_data / 'real_lq' / 'street_320x180'
  r = _run(f'--input={src}', f'--output={tmp_path / "lq"}', '--scale=4', '--seed=0',
           cwd=tmp_path)
  assert r.returncode == 0, r.stderr
  names = sorted(p.name for p in src.iterdir() if p.suffix == '.png')
  written = sorted(p.name for p in (tmp_path / 'lq').iterdir() if p.suffix == '.png')
  assert written == names
  assert {Image.open(tmp_path / 'lq' / n).size for n in names} == {(80, 45)}
  sidecar = json.loads((tmp_path / 'lq' / 'degradation.json').read_text())
  assert sidecar['layout'] == 'single_clip'
  params = sidecar['clips']['street_320x180']['params']
  assert params['num_frames'] == len(names) and params['video']['codec'] == 'libx264'
  # The LQ still shows the HR scene: it correlates with the HR downsampled by area.
  hr = frames.read_image(src / names[0])
  lq = frames.read_image(tmp_path / 'lq' / names[0])
  ref = degradations.downsample(hr, 4, 'area')
  assert np.corrcoef(lq.ravel(), ref.ravel())[0, 1] > 0.6


def test_bad_input_stops_with_one_line_and_writes_nothing(tmp_path):
  root = tmp_path / 'hr'
  _photo_clip(root / 'a', 3, 16, 16)
  bad = root / 'a' / '0001.png'
  data = bad.read_bytes()
  bad.write_bytes(data[:len(data) // 2])  # truncated: the header still parses
  r = _run(f'--input={root}', f'--output={tmp_path / "lq"}', '--scale=2', cwd=tmp_path)
  assert r.returncode != 0
  last = r.stderr.strip().splitlines()[-1]
  assert last.startswith(f'error: {bad}: ') and 'not a readable image' in last
  assert sorted(p.name for p in tmp_path.iterdir()) == ['hr']  # not even an empty lq/


def test_a_clip_name_that_is_not_utf8_is_one_line(tmp_path):
  root = tmp_path / 'hr'
  _photo_clip(root / 'good', 2, 16, 16)
  os.rename(root / 'good', os.path.join(os.fsencode(root), b'clip\xff'))
  r = _run(f'--input={root}', f'--output={tmp_path / "lq"}', '--scale=2', cwd=tmp_path)
  assert r.returncode == 1
  assert r.stderr.strip().splitlines() == [
      f'error: {root}/clip\\xff: name is not valid UTF-8; rename it']
  assert sorted(p.name for p in tmp_path.iterdir()) == ['hr']


def test_a_later_clip_failing_leaves_no_partial_output(tmp_path, default_ranges):
  """Clip 'a' degrades fine, then 'b' fails: no output at all, so a rerun with the
  input fixed is accepted (it was refused when 'a' stayed behind without a sidecar)."""
  cfg = degrade.with_codec(default_ranges, 'none')
  root = tmp_path / 'hr'
  _photo_clip(root / 'a', 2, 16, 16)
  _photo_clip(root / 'b', 2, 16, 16)
  (root / 'b' / '0001.png').write_bytes(b'')
  with pytest.raises(frames.FrameError):
    degrade.degrade_tree(root, tmp_path / 'lq', 2, 0, cfg)
  assert sorted(p.name for p in tmp_path.iterdir()) == ['hr']
  _photo_clip(root / 'c', 2, 16, 16)
  (root / 'b' / '0001.png').unlink()
  degrade.degrade_tree(root, tmp_path / 'lq', 2, 0, cfg)
  assert sorted(p.name for p in (tmp_path / 'lq').iterdir()) == ['a', 'b', 'c',
                                                                 degrade.SIDECAR]


def test_sigterm_leaves_nothing_and_says_interrupted(tmp_path):
  root = tmp_path / 'hr'
  for clip in 'abcdefgh':
    _photo_clip(root / clip, 6, 256, 256)
  proc = subprocess.Popen([sys.executable, '-m', 'clarity_jax.degrade', f'--input={root}',
                           f'--output={tmp_path / "lq"}', '--scale=2'], cwd=tmp_path,
                          stderr=subprocess.PIPE, text=True)
  deadline = time.time() + 120
  while not list(tmp_path.glob('.lq.tmp-*/*/*.png')) and time.time() < deadline:
    time.sleep(0.05)  # until frames are being written
  proc.send_signal(signal.SIGTERM)
  _, err = proc.communicate(timeout=120)
  assert proc.returncode == 130 and err.strip().splitlines()[-1] == 'interrupted'
  assert sorted(p.name for p in tmp_path.iterdir()) == ['hr']


def test_bad_inputs_in_process(tmp_path, default_ranges):
  cfg = degrade.with_codec(default_ranges, 'none')
  root = tmp_path / 'hr'
  _photo_clip(root / 'a', 3, 16, 16)
  odd = root / 'a' / '0002.png'
  frames.write_image(odd, np.zeros((16, 20, 3), np.float32))
  with pytest.raises(frames.FrameError, match=f'^{odd}: size 20x16 differs'):
    degrade.degrade_tree(root, tmp_path / 'lq', 2, 0, cfg)
  odd.write_bytes(b'')
  with pytest.raises(frames.FrameError, match=f'^{odd}: empty file'):
    degrade.degrade_tree(root, tmp_path / 'lq', 2, 0, cfg)
  with pytest.raises(frames.FrameError, match='no such folder'):
    degrade.degrade_tree(tmp_path / 'missing', tmp_path / 'lq', 2, 0, cfg)
  odd.unlink()
  foreign = tmp_path / 'somebody_elses'
  foreign.mkdir()
  (foreign / 'thesis.txt').write_text('keep me')
  with pytest.raises(degrade.OutputError, match='not empty and not an earlier degrade output'):
    degrade.degrade_tree(root, foreign, 2, 0, cfg)
  assert (foreign / 'thesis.txt').read_text() == 'keep me'
  tiny = tmp_path / 'tiny'
  _photo_clip(tiny / 'c', 2, 3, 3)
  with pytest.raises(frames.FrameError, match='smaller than the scale 4'):
    degrade.degrade_tree(tiny, tmp_path / 'lq_tiny', 4, 0, cfg)
  # A rerun into an earlier output replaces it.
  degrade.degrade_tree(root, tmp_path / 'lq', 2, 0, cfg)
  first = (tmp_path / 'lq' / 'a' / '0000.png').read_bytes()
  degrade.degrade_tree(root, tmp_path / 'lq', 2, 1, cfg)
  assert (tmp_path / 'lq' / 'a' / '0000.png').read_bytes() != first


def test_flag_errors(tmp_path):
  r = _run('--input=/nonexistent', '--output=/tmp/x', '--scale=3', cwd=tmp_path)
  assert r.returncode == 1  # the reason is the last line, not absl's help hint
  assert r.stderr.strip().splitlines()[-1] == 'error: --scale: must be 1, 2 or 4, got 3'
