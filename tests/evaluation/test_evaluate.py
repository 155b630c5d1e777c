"""evaluate: scores against direct metric calls and scikit-image, cascades, protocols,
pictures, LPIPS, bad inputs; one tiny training run shared by the whole file."""

import json
import os
from pathlib import Path
import shutil
import subprocess
import sys
import types

import cv2
import numpy as np
from PIL import Image
import pytest
from skimage import color
from skimage import data as skdata
from skimage.metrics import peak_signal_noise_ratio
from skimage.metrics import structural_similarity

from clarity_jax import metrics
from clarity_jax.media import frames
from clarity_jax.evaluation import clips as clips_lib
from clarity_jax.evaluation import evaluate
from clarity_jax.evaluation import methods
from clarity_jax.evaluation import pictures
from clarity_jax.inference import bundle
from clarity_jax.inference import export
from clarity_jax.inference import restorer
from clarity_jax.models import bicubic
from clarity_jax.models import lpips as lpips_lib
from clarity_jax.train import loop as train

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


def _run(**kw) -> dict:
  """evaluate.run with the command's defaults but for two pictures and no progress bar."""
  return evaluate.run(**{'num_pictures': 2, 'progress': False, **kw})


@pytest.fixture(scope='module')
def setup(tmp_path_factory, tiny_config, random_params):
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
  report = _run(
      bundles=[str(root / 'sr'), str(root / 'deblur'), f'{root / "deblur"}+{root / "sr"}'],
      workdirs=[str(workdir)], names=['joint', 'deblur + bicubic', 'two-stage', 'workdir'],
      lq=str(lq), gt=str(gt), output=str(out))
  return types.SimpleNamespace(root=root, lq=lq, gt=gt, out=out, report=report,
                               workdir=workdir)


def _read_u8(path: Path) -> np.ndarray:
  img = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
  assert img is not None, path
  return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)


def _outputs(setup, method: str, clip: str) -> list[np.ndarray]:
  folder = setup.out / evaluate.FRAMES_DIR / evaluate.folder_name(method) / clip
  return [_read_u8(folder / f'{t:08d}.png') for t in range(NUM_FRAMES)]


def _gts(setup, clip: str) -> list[np.ndarray]:
  return [_read_u8(setup.gt / clip / f'{t:08d}.png') for t in range(NUM_FRAMES)]


def _pil_bicubic(frame: np.ndarray, scale: int) -> np.ndarray:
  """Keys a = -0.5 by Pillow, one float32 ('F' mode) channel at a time: a reference
  independent of jax.image.resize."""
  h, w = frame.shape[:2]
  return np.stack([np.asarray(Image.fromarray(np.ascontiguousarray(frame[..., c]))
                              .resize((scale * w, scale * h), Image.BICUBIC))
                   for c in range(frame.shape[-1])], axis=-1)


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


def test_bicubic_baseline_matches_skimage_on_pillow_upscales(setup):
  result = setup.report['results']['bicubic']
  assert setup.report['methods']['bicubic']['interpolation'].startswith('Keys cubic a = -0.5')
  for clip in CLIPS:
    for t in range(NUM_FRAMES):
      lq = _read_u8(setup.lq / clip / f'{t:08d}.png').astype(np.float32) / 255
      up = _pil_bicubic(lq, SCALE)
      up = np.round(np.clip(up, 0, 1) * 255).astype(np.uint8)
      # The written baseline frame is Pillow's up to float rounding at .5 steps.
      written = _outputs(setup, 'bicubic', clip)[t]
      assert np.abs(written.astype(int) - up).max() <= 1
      assert np.mean(written != up) < 0.01
      up = up[SCALE:-SCALE, SCALE:-SCALE]
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
  deblur, _ = restorer.Restorer.from_bundle(setup.root / 'deblur', tile=0, batch=1)
  sr, _ = restorer.Restorer.from_bundle(setup.root / 'sr', tile=0, batch=1)
  for clip in CLIPS:
    lq = [frames.read_image(setup.lq / clip / f'{t:08d}.png') for t in range(NUM_FRAMES)]
    deblurred = [out for _, out in restorer.enhance_frames(deblur, lq)]
    two_stage = [out for _, out in restorer.enhance_frames(sr, deblurred)]
    upscaled = [bicubic.upsample_frame(f, SCALE) for f in deblurred]
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


def _env(repo: Path) -> dict[str, str]:
  env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL='2')
  env['PYTHONPATH'] = os.pathsep.join([str(repo), env.get('PYTHONPATH', '')])
  return env


def test_fmanet_protocol_drops_first_and_last_frames_on_the_command_line(setup, tmp_path,
                                                                         repo):
  out = tmp_path / 'fmanet'
  proc = subprocess.run(
      [sys.executable, '-m', 'clarity_jax.evaluate', f'--bundle={setup.root / "sr"}',
       '--names=joint', f'--lq={setup.lq}', f'--gt={setup.gt}', f'--output={out}',
       '--protocol=fmanet', '--num_pictures=1', '--save_frames=false', '--progress=false'],
      cwd=repo, env=_env(repo), capture_output=True, text=True, timeout=300)
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
    assert img.shape == (*pictures.picture_size(GT_H, GT_W, columns), 3)
    assert picture['columns'] == [*saved['results'], 'GT']
    y, x, bh, bw = picture['zoom_box']
    assert (bh, bw) == (GT_H // pictures.ZOOM, GT_W // pictures.ZOOM)
    # The GT column's zoom is the GT crop at ZOOM x, nearest neighbour.
    gt = _read_u8(setup.gt / picture['clip'] / picture['frame'])
    top = pictures.LABEL_HEIGHT + GT_H + pictures.PAD
    left = (columns - 1) * (GT_W + pictures.PAD)
    zoomed = img[top:, left:left + GT_W]
    np.testing.assert_array_equal(zoomed, np.repeat(np.repeat(
        gt[y:y + bh, x:x + bw], pictures.ZOOM, 0), pictures.ZOOM, 1))
  md = (setup.out / 'results.md').read_text()
  assert all(f'({p["file"]})' in md for p in saved['pictures'])
  assert 'LPIPS: unavailable' in md and '| unavailable |' in md


def test_lpips_is_scored_when_weights_are_given(setup, tmp_path, random_lpips_weights):
  import safetensors.numpy  # pylint: disable=g-import-not-at-top
  path = tmp_path / 'lpips_vgg.safetensors'
  safetensors.numpy.save_file(random_lpips_weights('vgg', seed=0), str(path))
  report = _run(lq=str(setup.lq), gt=str(setup.gt), output=str(tmp_path / 'e'),
                lpips_weights=str(path), max_frames=2, num_pictures=0)
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
  with pytest.raises((clips_lib.EvaluateError, frames.FrameError)) as e:
    _run(lq=str(lq), gt=str(gt), output=str(tmp_path / 'out'))
  message = str(e.value)
  assert message.startswith(f'{where}: ') and fragment in message and '\n' not in message
  assert not (tmp_path / 'out').exists()


def test_command_line_error_is_one_line_and_writes_nothing(setup, tmp_path, repo):
  lq, gt = _copy_data(setup, tmp_path)
  shutil.rmtree(gt / 'face')
  proc = subprocess.run(
      [sys.executable, '-m', 'clarity_jax.evaluate', f'--bundle={setup.root / "sr"}',
       f'--lq={lq}', f'--gt={gt}', f'--output={tmp_path / "out"}', '--progress=false'],
      cwd=repo, env=_env(repo), capture_output=True, text=True, timeout=300)
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
    _run(lq=str(lq), gt=str(gt), output=str(tmp_path / 'out'))
  assert sorted(p.name for p in tmp_path.iterdir()) == ['gt', 'lq']


def test_a_method_must_fit_the_data_scale(setup):
  with pytest.raises(clips_lib.EvaluateError,
                     match='upscales x2, which does not fit x1 data'):
    methods.load_method(str(setup.root / 'sr'), 1)
  with pytest.raises(bundle.BundleError, match='no such bundle folder'):
    methods.load_method(str(setup.root / 'absent'), 2)
