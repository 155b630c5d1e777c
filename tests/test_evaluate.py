"""evaluate: scores against direct metric calls and scikit-image, cascades, protocols,
pictures, LPIPS, bad inputs; the baseline configs."""

import json
import os
from pathlib import Path
import shutil
import subprocess
import sys
import types

import cv2
import ml_collections
import numpy as np
import pytest
from scipy import ndimage
from skimage import color
from skimage import data as skdata
from skimage.metrics import peak_signal_noise_ratio
from skimage.metrics import structural_similarity

from clarity_jax.inference import bundle
from clarity_jax import config as config_checks
from clarity_jax import config as config_files
from clarity_jax.inference import enhance
from clarity_jax.evaluation import evaluate
from clarity_jax.inference import export
from clarity_jax import metrics
from clarity_jax.train import loop as train
from clarity_jax.data import frames
from clarity_jax.models import lpips as lpips_lib
from conftest import REPO, load_config, tiny_config
from test_enhance import random_params
from test_metrics import _random_lpips_weights

SCALE = 2
GT_H, GT_W = 64, 96
CLIPS = {'street': (120, 150), 'face': (60, 180)}  # clip -> top-left in the photo
NUM_FRAMES = 5


def _write_dataset(root: Path) -> tuple[Path, Path]:
  """GT: a panning crop of a photograph; LQ: its x2 area downscale."""
  photo = skdata.astronaut().astype(np.float32) / 255.0
  for clip, (y0, x0) in CLIPS.items():
    (root / 'gt' / clip).mkdir(parents=True)
    (root / 'lq' / clip).mkdir(parents=True)
    for t in range(NUM_FRAMES):
      gt = photo[y0 + 2 * t:y0 + 2 * t + GT_H, x0 + 3 * t:x0 + 3 * t + GT_W]
      frames.write_image(root / 'gt' / clip / f'{t:08d}.png', gt)
      lq = cv2.resize(gt, (GT_W // SCALE, GT_H // SCALE), interpolation=cv2.INTER_AREA)
      frames.write_image(root / 'lq' / clip / f'{t:08d}.png', lq)
  return root / 'lq', root / 'gt'


def _flags(**kw) -> types.SimpleNamespace:
  """The CLI's flag values, as evaluate.run reads them."""
  values = dict(bundle=[], workdir=[], names=[], protocol='basicsr', scale=None,
                max_frames=None, lpips_weights='', num_pictures=2, save_frames=True,
                tile=0, tile_overlap=16, batch=1, dtype='float32', progress=False)
  values.update(kw)
  return types.SimpleNamespace(**values)


@pytest.fixture(scope='module')
def setup(tmp_path_factory):
  """Data, ONE tiny training run (x2, K=1), its bundle, a scale-1 bundle, and one
  evaluation of every kind of method."""
  root = tmp_path_factory.mktemp('evaluate')
  lq, gt = _write_dataset(root)
  workdir = root / 'run'
  config = tiny_config(scale=SCALE, num_train_steps=2, eval_every_steps=2,
                       checkpoint_every_steps=2)
  train.train_and_evaluate(config, str(workdir))
  export.export(workdir, root / 'sr')
  # The deblur stage: a real (randomly initialised) scale-1 network; training a
  # second model would double the fixture's time for nothing these tests check.
  spec = bundle.ModelSpec('tiny', scale=1, num_neighbors=1)
  bundle.save_bundle(root / 'deblur', spec, random_params(spec, seed=3)[1], step=0)
  out = root / 'eval'
  report = evaluate.run(_flags(
      bundle=[str(root / 'sr'), str(root / 'deblur'), f'{root / "deblur"}+{root / "sr"}'],
      workdir=[str(workdir)], names=['joint', 'deblur + bicubic', 'two-stage', 'workdir'],
      lq=str(lq), gt=str(gt), output=str(out)))
  return types.SimpleNamespace(root=root, lq=lq, gt=gt, out=out, report=report,
                               workdir=workdir)


def _read_u8(path: Path) -> np.ndarray:
  img = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
  assert img is not None, path
  return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)


def _outputs(setup, method: str, clip: str) -> list[np.ndarray]:
  folder = setup.out / 'frames' / evaluate._slug(method) / clip  # pylint: disable=protected-access
  return [_read_u8(folder / f'{t:08d}.png') for t in range(NUM_FRAMES)]


def _gts(setup, clip: str) -> list[np.ndarray]:
  return [_read_u8(setup.gt / clip / f'{t:08d}.png') for t in range(NUM_FRAMES)]


def test_metrics_json_equals_direct_metric_calls_on_written_frames(setup):
  saved = json.loads((setup.out / 'metrics.json').read_text())
  assert list(saved['results']) == ['bicubic', 'joint', 'deblur + bicubic', 'two-stage',
                                    'workdir']
  for method, result in saved['results'].items():
    clip_means = []
    for clip in CLIPS:
      entry = result['clips'][clip]
      outs, gts = _outputs(setup, method, clip), _gts(setup, clip)
      for t, (out, gt) in enumerate(zip(outs, gts)):
        got = entry['frames'][f'{t:08d}.png']
        # Written 8-bit frames, re-read, through the metrics module's public calls.
        pred01, gt01 = out.astype(np.float32) / 255, gt.astype(np.float32) / 255
        for key, y in (('psnr', False), ('psnr_y', True)):
          want = float(metrics.psnr(pred01, gt01, crop_border=SCALE, y_channel=y,
                                    quantize=True))
          assert got[key] == pytest.approx(want, abs=1e-4), (method, clip, t, key)
        for key, y in (('ssim', False), ('ssim_y', True)):
          want = float(metrics.ssim(pred01, gt01, crop_border=SCALE, y_channel=y,
                                    quantize=True))
          assert got[key] == pytest.approx(want, abs=1e-5), (method, clip, t, key)
        assert got['lpips'] is None
      for key in ('psnr', 'ssim'):
        assert entry['mean'][key] == pytest.approx(
            np.mean([f[key] for f in entry['frames'].values()]), abs=1e-9)
      assert entry['tof'] == pytest.approx(metrics.tof(np.stack(outs), np.stack(gts)),
                                           abs=1e-6)
      assert entry['flicker'] == pytest.approx(metrics.flicker(np.stack(outs),
                                                               np.stack(gts)), abs=1e-9)
      clip_means.append(entry['mean']['psnr'])
    assert result['mean']['psnr'] == pytest.approx(np.mean(clip_means), abs=1e-9)
  assert saved['protocol']['crop_border'] == SCALE
  assert saved['protocol']['num_frames_included'] == NUM_FRAMES * len(CLIPS)
  # The trained network is not bicubic: its numbers differ.
  assert saved['results']['joint']['mean']['psnr'] != saved['results']['bicubic']['mean']['psnr']


def test_bicubic_baseline_matches_skimage_on_cv2_upscales(setup):
  result = setup.report['results']['bicubic']
  for clip in CLIPS:
    for t in range(NUM_FRAMES):
      lq = _read_u8(setup.lq / clip / f'{t:08d}.png').astype(np.float32) / 255
      up = cv2.resize(lq, (GT_W, GT_H), interpolation=cv2.INTER_CUBIC)
      up = np.round(np.clip(up, 0, 1) * 255).astype(np.uint8)[SCALE:-SCALE, SCALE:-SCALE]
      gt = _read_u8(setup.gt / clip / f'{t:08d}.png')[SCALE:-SCALE, SCALE:-SCALE]
      got = result['clips'][clip]['frames'][f'{t:08d}.png']
      assert got['psnr'] == pytest.approx(peak_signal_noise_ratio(gt, up, data_range=255),
                                          abs=0.01)
      assert got['ssim'] == pytest.approx(structural_similarity(
          gt, up, data_range=255, channel_axis=-1, gaussian_weights=True, sigma=1.5,
          use_sample_covariance=False), abs=1e-3)
      y_up, y_gt = color.rgb2ycbcr(up)[..., 0], color.rgb2ycbcr(gt)[..., 0]
      assert got['psnr_y'] == pytest.approx(peak_signal_noise_ratio(y_gt, y_up,
                                                                    data_range=255), abs=0.01)


def test_cascades_run_their_stages_in_sequence(setup):
  deblur, _ = enhance.Restorer.from_bundle(setup.root / 'deblur', tile=0, batch=1)
  sr, _ = enhance.Restorer.from_bundle(setup.root / 'sr', tile=0, batch=1)
  for clip in CLIPS:
    lq = [frames.read_image(setup.lq / clip / f'{t:08d}.png') for t in range(NUM_FRAMES)]
    deblurred = [out for _, out in enhance.restore_frames(deblur, lq)]
    two_stage = [out for _, out in enhance.restore_frames(sr, deblurred)]
    upscaled = [enhance.bicubic_upscale(f, SCALE) for f in deblurred]
    for want, got in ((two_stage, _outputs(setup, 'two-stage', clip)),
                      (upscaled, _outputs(setup, 'deblur + bicubic', clip))):
      for w, g in zip(want, got):
        # One 8-bit step of slack: the same network, a separately compiled program.
        assert np.abs(np.round(np.clip(w, 0, 1) * 255) - g).max() <= 1
  info = setup.report['methods']
  assert [s['scale'] for s in info['two-stage']['stages']] == [1, SCALE]
  assert info['deblur + bicubic']['bicubic_after'] == SCALE
  assert info['joint']['bicubic_after'] == 1


def test_workdir_scores_like_its_exported_bundle(setup):
  results = setup.report['results']
  assert results['workdir']['clips'] == results['joint']['clips']
  assert setup.report['methods']['workdir']['stages'][0]['step'] == 2


def test_fmanet_protocol_drops_first_and_last_frames_on_the_command_line(setup, tmp_path):
  out = tmp_path / 'fmanet'
  proc = subprocess.run(
      [sys.executable, '-m', 'clarity_jax.evaluate', f'--bundle={setup.root / "sr"}',
       '--names=joint', f'--lq={setup.lq}', f'--gt={setup.gt}', f'--output={out}',
       '--protocol=fmanet', '--num_pictures=1', '--save_frames=false', '--progress=false'],
      cwd=REPO, env=_env(), capture_output=True, text=True, timeout=300)
  assert proc.returncode == 0, proc.stderr
  assert '| joint |' in proc.stdout
  saved = json.loads((out / 'metrics.json').read_text())
  protocol = saved['protocol']
  assert protocol['name'] == 'fmanet'
  assert protocol['num_frames_included'] == (NUM_FRAMES - 2) * len(CLIPS)
  assert protocol['num_frames_dropped'] == 2 * len(CLIPS)
  for clip in CLIPS:
    assert protocol['frames_dropped'][clip] == ['00000000.png', f'{NUM_FRAMES - 1:08d}.png']
    for method in ('bicubic', 'joint'):
      frames_f = saved['results'][method]['clips'][clip]['frames']
      frames_b = setup.report['results'][method]['clips'][clip]['frames']
      assert sorted(frames_f) == protocol['frames_included'][clip]
      # The same restorations (the window still sees every frame), fewer of them scored.
      for name, scores in frames_f.items():
        assert scores['psnr'] == pytest.approx(frames_b[name]['psnr'], abs=1e-4)
  assert not (out / 'frames').exists()
  assert len(list((out / 'pictures').glob('*.png'))) == 1
  assert 'fmanet' in (out / 'results.md').read_text()


def test_pictures_have_the_expected_size(setup):
  saved = json.loads((setup.out / 'metrics.json').read_text())
  assert len(saved['pictures']) == 2
  columns = len(saved['results']) + 1  # every method and the ground truth
  for picture in saved['pictures']:
    img = _read_u8(setup.out / picture['file'])
    assert img.shape == (*evaluate.picture_size(GT_H, GT_W, columns), 3)
    assert picture['columns'] == [*saved['results'], 'GT']
    y, x, bh, bw = picture['zoom_box']
    assert (bh, bw) == (GT_H // evaluate.ZOOM, GT_W // evaluate.ZOOM)
    # The GT column's zoom is the GT crop at ZOOM x, nearest neighbour.
    gt = _read_u8(setup.gt / picture['clip'] / picture['frame'])
    top = evaluate.LABEL_HEIGHT + GT_H + evaluate.PAD
    left = (columns - 1) * (GT_W + evaluate.PAD)
    zoomed = img[top:, left:left + GT_W]
    np.testing.assert_array_equal(zoomed, np.repeat(np.repeat(
        gt[y:y + bh, x:x + bw], evaluate.ZOOM, 0), evaluate.ZOOM, 1))
  md = (setup.out / 'results.md').read_text()
  assert all(f'({p["file"]})' in md for p in saved['pictures'])
  assert 'LPIPS: unavailable' in md and '| unavailable |' in md


def test_detail_box_is_the_window_of_most_gradient_energy():
  rng = np.random.default_rng(0)
  img = rng.integers(0, 256, (30, 41, 3), dtype=np.uint8)
  img = cv2.GaussianBlur(img, (0, 0), 2.0)
  gray = cv2.cvtColor(img, cv2.COLOR_RGB2GRAY).astype(np.float64)
  energy = ndimage.sobel(gray, 1, mode='reflect') ** 2 + ndimage.sobel(gray, 0,
                                                                        mode='reflect') ** 2
  h, w = 7, 9
  border = 3
  best, where = -1.0, None
  for y in range(border, 30 - h - border + 1):
    for x in range(border, 41 - w - border + 1):
      total = energy[y:y + h, x:x + w].sum()
      if total > best:
        best, where = total, (y, x)
  assert evaluate.detail_box(img, (h, w), border=border) == where


def test_lpips_is_scored_when_weights_are_given(setup, tmp_path):
  import safetensors.numpy  # pylint: disable=g-import-not-at-top
  path = tmp_path / 'lpips_vgg.safetensors'
  safetensors.numpy.save_file(_random_lpips_weights('vgg', seed=0), str(path))
  report = evaluate.run(_flags(lq=str(setup.lq), gt=str(setup.gt), output=str(tmp_path / 'e'),
                               lpips_weights=str(path), max_frames=2, num_pictures=0))
  model = lpips_lib.load_lpips(str(path))
  crop = slice(SCALE, -SCALE)
  for clip in CLIPS:
    out = _read_u8(tmp_path / 'e' / 'frames' / 'bicubic' / clip / '00000001.png')
    gt = _read_u8(setup.gt / clip / '00000001.png')
    want = float(model(out[crop, crop].astype(np.float32) / 255,
                       gt[crop, crop].astype(np.float32) / 255))
    got = report['results']['bicubic']['clips'][clip]['frames']['00000001.png']['lpips']
    assert got == pytest.approx(want, rel=1e-4) and got > 0
  assert report['protocol']['lpips'].startswith('LPIPS v0.1 vgg')
  assert report['protocol']['num_frames_included'] == 2 * len(CLIPS)  # --max_frames=2


def _copy_data(setup, tmp_path) -> tuple[Path, Path]:
  shutil.copytree(setup.lq, tmp_path / 'lq')
  shutil.copytree(setup.gt, tmp_path / 'gt')
  return tmp_path / 'lq', tmp_path / 'gt'


def _break(kind: str, lq: Path, gt: Path) -> tuple[Path, str]:
  """Damages a copy of the data; returns the path the error must start with and a
  fragment of its message."""
  if kind == 'missing_gt_clip':
    shutil.rmtree(gt / 'face')
    return lq / 'face', "clip 'face' has no ground truth"
  if kind == 'wrong_size':
    for p in sorted((gt / 'street').iterdir()):
      frames.write_image(p, np.zeros((GT_H, GT_W - 6, 3), np.float32))
    return gt / 'street', f"ground-truth frames of {GT_W - 6}x{GT_H} do not match"
  if kind == 'not_a_scale':
    for p in sorted((gt / 'face').iterdir()):
      frames.write_image(p, np.zeros((GT_H // 2 * 3, GT_W // 2 * 3, 3), np.float32))
    return gt / 'face', 'are not 1, 2 or 4 times'
  if kind == 'empty_clip':
    for p in (lq / 'street').iterdir():
      p.unlink()
    return lq / 'street', 'clip folder has no frames'
  if kind == 'empty_root':
    shutil.rmtree(gt)
    gt.mkdir()
    return gt, 'no frames and no clip folders'
  if kind == 'frame_count':
    (gt / 'face' / '00000004.png').unlink()
    return lq / 'face', "clip 'face' has 5 LQ frames but 4 ground-truth frames"
  raise ValueError(kind)


@pytest.mark.parametrize('kind', ['missing_gt_clip', 'wrong_size', 'not_a_scale', 'empty_clip',
                                  'empty_root', 'frame_count'])
def test_bad_inputs_stop_with_one_line_naming_the_clip(setup, tmp_path, kind):
  lq, gt = _copy_data(setup, tmp_path)
  where, fragment = _break(kind, lq, gt)
  with pytest.raises((evaluate.EvaluateError, frames.FrameError)) as e:
    evaluate.run(_flags(lq=str(lq), gt=str(gt), output=str(tmp_path / 'out')))
  message = str(e.value)
  assert message.startswith(f'{where}: ') and fragment in message and '\n' not in message
  assert not (tmp_path / 'out').exists()


def _env():
  env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL='2')
  env['PYTHONPATH'] = os.pathsep.join([str(REPO), env.get('PYTHONPATH', '')])
  return env


def test_command_line_error_is_one_line_and_writes_nothing(setup, tmp_path):
  lq, gt = _copy_data(setup, tmp_path)
  shutil.rmtree(gt / 'face')
  proc = subprocess.run(
      [sys.executable, '-m', 'clarity_jax.evaluate', f'--bundle={setup.root / "sr"}',
       f'--lq={lq}', f'--gt={gt}', f'--output={tmp_path / "out"}', '--progress=false'],
      cwd=REPO, env=_env(), capture_output=True, text=True, timeout=300)
  assert proc.returncode == 1
  assert proc.stderr.strip().splitlines()[-1] == (
      f"error: {lq / 'face'}: clip 'face' has no ground truth (no {gt / 'face'})")
  assert not (tmp_path / 'out').exists()


def test_failure_midway_leaves_nothing_half_written(setup, tmp_path):
  lq, gt = _copy_data(setup, tmp_path)
  # A frame whose header is fine but whose data is cut: found only when decoded,
  # after the first clip has been restored and written.
  data = (lq / 'street' / '00000003.png').read_bytes()
  (lq / 'street' / '00000003.png').write_bytes(data[:len(data) // 2])
  with pytest.raises(frames.FrameError, match='00000003.png: not a readable image'):
    evaluate.run(_flags(lq=str(lq), gt=str(gt), output=str(tmp_path / 'out')))
  assert sorted(p.name for p in tmp_path.iterdir()) == ['gt', 'lq']


def test_a_method_must_fit_the_data_scale(setup):
  with pytest.raises(evaluate.EvaluateError, match='upscales x2, which does not fit x1 data'):
    evaluate.load_method(str(setup.root / 'sr'), 1)
  with pytest.raises(bundle.BundleError, match='no such bundle folder'):
    evaluate.load_method(str(setup.root / 'absent'), 2)


# ------------------------------------------------------------------- configs


def _config(name: str, arg: str | None = 'runlocal') -> ml_collections.ConfigDict:
  return config_files.get_config(REPO / 'configs' / f'{name}.py', arg)


def _flat(config, prefix=''):
  out = {}
  for key, value in config.items():
    if isinstance(value, ml_collections.ConfigDict):
      out.update(_flat(value, f'{prefix}{key}.'))
    else:
      out[f'{prefix}{key}'] = value
  return out


@pytest.mark.parametrize('name,deltas', [
    ('sr_only', {'degradation.blur_prob': 0.0, 'degradation.noise_prob': 0.0,
                 'degradation.jpeg_prob': 0.0, 'degradation.video_codec_prob': 0.0,
                 'degradation.resize_modes': ('bicubic',), 'degradation.resize_probs': (1.0,)}),
    ('deblur_only', {'scale': 1}),
    ('single_frame', {'num_neighbors': 0}),
    ('no_alignment', {'model.use_alignment': False}),
    ('no_attention', {'model.use_attention': False}),
])
@pytest.mark.parametrize('arg', ['runlocal', None])
def test_baseline_configs_override_only_their_deltas(name, deltas, arg):
  default = _flat(load_config(arg))
  config = _config(name, arg)
  config_checks.validate(config)
  got = _flat(config)
  assert set(got) == set(default)
  changed = {k: v for k, v in got.items() if v != default[k]}
  assert changed == deltas
