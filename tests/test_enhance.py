"""The enhancement engine and CLI: windows, tiles, streaming, outputs and bad inputs."""

import fractions
import json
import os
from pathlib import Path
import re
import shutil
import subprocess
import sys
import weakref

import cv2
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from PIL import Image
import skimage.data

from clarity_jax.inference import bundle
from clarity_jax.inference import enhance
from clarity_jax.data import video_io
from clarity_jax.data import frames
from conftest import REPO
from test_video_io import decode_all, smooth_frames, write_video

SCALE, K = 2, 1


def _env():
  env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL='2')
  env['PYTHONPATH'] = os.pathsep.join([str(REPO), env.get('PYTHONPATH', '')])
  return env


def run_enhance(*args: str) -> subprocess.CompletedProcess:
  return subprocess.run([sys.executable, '-m', 'clarity_jax.enhance', '--progress=false',
                         *args], cwd=REPO, env=_env(), capture_output=True, text=True,
                        timeout=600)


def random_params(spec: bundle.ModelSpec, seed: int = 0):
  """(graphdef, params): the network with LeCun-normal kernels drawn by NumPy.

  The same distribution as Flax's initialisers, without compiling one XLA
  program per initialiser (~10 s on a busy 2-core machine).
  """
  graphdef, state = nnx.split(nnx.eval_shape(spec.create))
  rng = np.random.default_rng(seed)

  def draw(path, x):
    name = str(getattr(path[-1], 'key', path[-1]))
    if name == 'kernel':
      return (rng.standard_normal(x.shape) / np.sqrt(np.prod(x.shape[:-1]))).astype(x.dtype)
    if name == 'bias':
      return np.zeros(x.shape, x.dtype)
    return np.ones(x.shape, x.dtype)  # the attention's log temperature

  return graphdef, jax.tree_util.tree_map_with_path(draw, nnx.to_pure_dict(state))


@pytest.fixture(scope='module')
def model(tmp_path_factory):
  """A randomly initialised tiny ClarityNetSR (K=1, x2) and its bundle.

  Untrained, but a real network: its output is far from bicubic and its
  receptive field (flow pyramid, half-resolution attention) reaches well past
  a tile's edge, so tiling has something to get wrong.
  """
  spec = bundle.ModelSpec('tiny', scale=SCALE, num_neighbors=K)
  graphdef, params = random_params(spec, seed=1)
  path = tmp_path_factory.mktemp('bundle') / 'tiny_x2'
  bundle.save_bundle(path, spec, params, step=0)
  return path, graphdef, params


def restorer(model, **kwargs) -> enhance.Restorer:
  _, graphdef, params = model
  return enhance.Restorer(graphdef, params, scale=SCALE, num_neighbors=K, **kwargs)


def reference(model, windows: np.ndarray) -> np.ndarray:
  """The network applied to whole windows directly: what tiling must reproduce."""
  _, graphdef, params = model
  out = jax.jit(lambda p, x: jnp.clip(nnx.merge(graphdef, p)(x), 0, 1))(params, windows)
  return np.asarray(out)


def photo_windows(n: int, h: int, w: int) -> np.ndarray:
  """[n, 3, h, w, 3] windows of a real photograph panning (skimage astronaut)."""
  img = cv2.resize(skimage.data.astronaut(), (w + 4 * (n + 2), h + 3 * (n + 2)),
                   interpolation=cv2.INTER_AREA).astype(np.float32) / 255.0
  seq = [img[3 * t:3 * t + h, 4 * t:4 * t + w] for t in range(n + 2)]
  return np.stack([np.stack(seq[t:t + 3]) for t in range(n)])


def psnr(a: np.ndarray, b: np.ndarray, peak: float = 1.0) -> float:
  mse = np.mean((np.asarray(a, np.float64) - np.asarray(b, np.float64)) ** 2)
  return 10 * np.log10(peak ** 2 / mse)


# ------------------------------------------------------------------ windows


@pytest.mark.parametrize('k', [0, 1, 2, 3])
def test_windows_reflect_like_numpy(k):
  for n in range(1, 10):
    clip = [np.full((1, 1, 3), i, np.float32) for i in range(n)]
    got = np.stack([np.stack(w)[:, 0, 0, 0] for w in enhance.temporal_windows(clip, k)])
    padded = np.pad(np.arange(n), k, mode='reflect')  # numpy's reflect: 2,1,0,1,2
    want = np.stack([padded[t:t + 2 * k + 1] for t in range(n)])
    np.testing.assert_array_equal(got, want, err_msg=f'n={n}, k={k}')


def test_windows_keep_only_a_ring_buffer():
  """At most 2K+1 decoded frames alive and K frames of read-ahead, however long
  the clip: memory cannot grow with its length."""
  k, n = 2, 40
  produced: list[weakref.ref] = []
  consumed = 0

  def clip():
    nonlocal consumed
    for i in range(n):
      frame = np.full((4, 4, 3), i, np.float32)
      produced.append(weakref.ref(frame))
      consumed += 1
      yield frame
      del frame

  for t, window in enumerate(enhance.temporal_windows(clip(), k)):
    alive = sum(r() is not None for r in produced)
    assert alive <= 2 * k + 1, (t, alive)
    assert consumed <= min(t + k + 1, n)
    assert len(window) == 2 * k + 1 and window[k][0, 0, 0] == t
  assert t == n - 1


def test_restore_frames_streams_in_order(model):
  """The whole engine reads at most batch + K frames ahead of what it returns."""
  r = restorer(model, tile=0, batch=3)
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
  for i, (lq, out) in enumerate(enhance.restore_frames(r, source())):
    assert consumed - i <= r.batch + K + 1
    assert sum(ref() is not None for ref in decoded) <= r.batch + 2 * K + 1
    np.testing.assert_array_equal(lq, clip[i])
    outputs.append(out)
    del lq
  assert len(outputs) == len(clip)
  # Frame 0's window is reflected: (1, 0, 1).
  first = reference(model, np.stack([clip[1], clip[0], clip[1]])[None])[0]
  np.testing.assert_allclose(outputs[0], first, atol=1e-5)
  middle = reference(model, np.stack(clip[4:7])[None])[0]
  np.testing.assert_allclose(outputs[5], middle, atol=1e-5)


# -------------------------------------------------------------------- tiles


def test_tile_grid_covers_the_frame_with_equal_tiles():
  assert enhance.tile_starts(100, 48, 12) == [0, 36, 52]
  assert enhance.tile_starts(40, 48, 12) == [0]
  for size, tile, overlap in [(100, 48, 12), (257, 64, 16), (64, 64, 8), (65, 64, 8)]:
    starts = enhance.tile_starts(size, tile, overlap)
    covered = np.zeros(size, bool)
    for s in starts:
      assert 0 <= s and s + tile <= size  # never outside: every tile the same shape
      covered[s:s + tile] = True
    assert covered.all()
    assert all(b - a <= tile - overlap for a, b in zip(starts, starts[1:]))


def test_raised_cosine_ramps_cross_fade_to_one():
  overlap = 8  # an outer quarter dropped (2 px), a 4 px ramp, then full weight
  left = enhance.blend_ramp(32, overlap, fade_in=False, fade_out=True)
  right = enhance.blend_ramp(32, overlap, fade_in=True, fade_out=False)
  # Two tiles overlapping by exactly `overlap` pixels: weights sum to 1 there.
  np.testing.assert_allclose(left[-overlap:] + right[:overlap], 1.0, atol=1e-6)
  i = np.arange(4) + 0.5
  np.testing.assert_allclose(right[:overlap], [0, 0, *np.sin(np.pi / 2 * i / 4) ** 2, 1, 1],
                             atol=1e-6)
  assert (left[:-overlap] == 1).all() and (right[overlap:] == 1).all()  # frame borders
  # Every pixel of any grid gets a positive total weight (no division by zero),
  # shifted last tiles included.
  for size, tile, ov in [(100, 48, 12), (257, 64, 16), (65, 64, 8), (130, 64, 31)]:
    total = np.zeros(size)
    for s in enhance.tile_starts(size, tile, ov):
      total[s:s + tile] += enhance.blend_ramp(tile, ov, s > 0, s + tile < size)
    assert total.min() > 0.5, (size, tile, ov)


def test_untiled_restorer_is_the_network(model):
  windows = photo_windows(3, 20, 28)
  want = reference(model, windows)
  r = restorer(model, tile=0, batch=4)  # 3 windows: a short batch, padded
  got = r(windows)
  assert len(got) == 3 and all(f.shape == (SCALE * 20, SCALE * 28, 3) for f in got)
  assert all(f.dtype == np.float32 for f in got)
  np.testing.assert_allclose(np.stack(got), want, atol=1e-5)
  one_at_a_time = restorer(model, tile=0, batch=1)
  np.testing.assert_allclose(np.stack([one_at_a_time([w])[0] for w in windows]),
                             np.stack(got), atol=1e-5)


def _seam_profile(tiled: np.ndarray, untiled: np.ndarray) -> float:
  """The worst mean |difference| along any output row or column: a seam is a
  line of error, which a per-pixel average would dilute."""
  d = np.abs(tiled - untiled).mean(axis=-1)  # [B, H, W]
  return float(max(d.mean(axis=1).max(), d.mean(axis=2).max()))


def test_tiled_output_matches_untiled_without_seams(model):
  windows = photo_windows(2, 72, 100)  # larger than the 48-pixel tile both ways
  untiled = np.stack(restorer(model, tile=0, batch=2)(windows))
  # enhance's default overlap (16) on a 3x2 grid with shifted last tiles.
  tiled = np.stack(restorer(model, tile=48, tile_overlap=16, batch=2)(windows))
  assert psnr(tiled, untiled) > 45
  assert _seam_profile(tiled, untiled) < 1 / 255  # under one 8-bit level on any line
  # The same measure does see seams: tiles that merely abut (no overlap, no blend).
  abutting = np.stack(restorer(model, tile=48, tile_overlap=0, batch=2)(windows))
  assert _seam_profile(abutting, untiled) > 5 / 255
  assert psnr(abutting, untiled) < psnr(tiled, untiled) - 10
  # One compiled program for every tile of every batch, short batches included.
  before = enhance.trace_count
  other = restorer(model, tile=40, tile_overlap=8, batch=2)  # a tile shape new here
  other(windows)
  other(windows[:1])
  other(windows[::-1, :, :50, :70])  # another frame size, the same tile shape
  assert enhance.trace_count - before == 1


def test_tile_flags_are_checked(model):
  with pytest.raises(enhance.EnhanceError, match='^--tile_overlap: 16 must be less than half'):
    restorer(model, tile=32, tile_overlap=16)


# ------------------------------------------------------------- files in/out


def test_cli_restores_a_video_frame_for_frame(model, tmp_path):
  src = smooth_frames(9, 40, 56)
  video = write_video(tmp_path / 'in.mp4', src, fps=fractions.Fraction(25))
  out = tmp_path / 'out' / 'restored.mp4'
  proc = run_enhance(f'--bundle={model[0]}', f'--input={video}', f'--output={out}',
                     '--tile=32', '--tile_overlap=8', '--batch=4', '--compare',
                     '--preset=veryfast')
  assert proc.returncode == 0, proc.stderr[-3000:]
  # x264 records its settings in the stream: veryfast's, not the default medium's.
  for path in (out, tmp_path / 'out' / 'restored_compare.mp4'):
    assert b'subme=2' in path.read_bytes() and b'subme=7' not in path.read_bytes()
  restored, (rate, codec, pix_fmt) = decode_all(out)
  assert restored.shape == (9, SCALE * 40, SCALE * 56, 3)
  assert (rate, codec, pix_fmt) == (25, 'h264', 'yuv420p')
  side, _ = decode_all(tmp_path / 'out' / 'restored_compare.mp4')
  assert side.shape == (9, SCALE * 40, 2 * SCALE * 56, 3)
  # Left half: bicubic of the decoded input (smooth, so x264 keeps it well).
  lq, _ = decode_all(video)
  bicubic = [enhance.bicubic_upscale(f.astype(np.float32) / 255, SCALE) for f in lq]
  assert psnr(side[:, :, :SCALE * 56], np.round(np.stack(bicubic) * 255), peak=255) > 35
  # Frames out (lossless PNG) hold exactly what the engine computes on the
  # decoded frames: reflected windows, tiles, batches and all.
  engine = restorer(model, tile=32, tile_overlap=8, batch=4)
  summary = enhance.enhance(engine, video, tmp_path / 'frames', progress=False)
  assert summary.kind == 'frames' and summary.frames == 9
  assert sorted(os.listdir(tmp_path / 'frames')) == [f'{i:06d}.png' for i in range(9)]
  want = [o for _, o in enhance.restore_frames(engine, list(lq.astype(np.float32) / 255))]
  for i, w in enumerate(want):
    np.testing.assert_allclose(frames.read_image(tmp_path / 'frames' / f'{i:06d}.png'), w,
                               atol=0.5 / 255 + 1e-6)
  assert sorted(os.listdir(tmp_path / 'out')) == ['restored.mp4', 'restored_compare.mp4']


def test_frame_folders_clip_trees_and_images(model, tmp_path):
  r = restorer(model, tile=32, tile_overlap=8, batch=2)
  lq = photo_windows(5, 24, 40)[:, 1]  # 5 frames 40x24
  clip = tmp_path / 'clip'
  clip.mkdir()
  names = ['a_01.png', 'a_02.png', 'a_03.jpg', 'a_10.png', 'a_11.png']
  for name, f in zip(names, lq):
    frames.write_image(clip / name, f, jpeg_quality=100)

  summary = enhance.enhance(r, clip, tmp_path / 'out', progress=False)
  assert (summary.kind, summary.frames) == ('frames', 5)
  assert sorted(os.listdir(tmp_path / 'out')) == sorted(names)
  for name in names:
    assert frames.read_image(tmp_path / 'out' / name).shape == (48, 80, 3)

  root = tmp_path / 'root'
  shutil.copytree(clip, root / 'cam1')
  shutil.copytree(clip, root / 'cam2')
  enhance.enhance(r, root, tmp_path / 'tree', max_frames=3, progress=False)
  for cam in ('cam1', 'cam2'):
    assert sorted(os.listdir(tmp_path / 'tree' / cam)) == sorted(names[:3])

  image = clip / 'a_02.png'
  untiled = restorer(model, tile=0, batch=1)
  summary = enhance.enhance(untiled, image, tmp_path / 'one.png', compare=True,
                            progress=False)
  assert summary.frames == 1 and summary.compare == tmp_path / 'one_compare.png'
  restored = frames.read_image(tmp_path / 'one.png')
  side = frames.read_image(tmp_path / 'one_compare.png')
  assert restored.shape == (48, 80, 3) and side.shape == (48, 160, 3)
  np.testing.assert_allclose(side[:, 80:], restored, atol=1 / 255)
  # Left half: bicubic, as PIL computes it (a different bicubic kernel: > 30 dB).
  pil = Image.open(image).resize((80, 48), Image.Resampling.BICUBIC)
  assert psnr(side[:, :80], np.asarray(pil, np.float32) / 255) > 30
  # A single frame is its own neighbours: the network on (f, f, f).
  f = frames.read_image(image)
  np.testing.assert_allclose(restored, reference(model, np.stack([f, f, f])[None])[0],
                             atol=1 / 255 + 1e-6)


def test_existing_outputs_are_kept_unless_overwrite(model, tmp_path):
  r = restorer(model, tile=0, batch=1)
  image = tmp_path / 'in.png'
  frames.write_image(image, photo_windows(1, 8, 8)[0, 1])
  out = tmp_path / 'out.png'
  out.write_bytes(b'precious')
  with pytest.raises(video_io.MediaError, match=f'^{out}: already exists'):
    enhance.enhance(r, image, out, progress=False)
  assert out.read_bytes() == b'precious'
  enhance.enhance(r, image, out, overwrite=True, progress=False)
  assert frames.read_image(out).shape == (16, 16, 3)
  (tmp_path / 'clip').mkdir()
  shutil.copy(image, tmp_path / 'clip' / 'f.png')
  with pytest.raises(enhance.EnhanceError, match=f'^{tmp_path / "x.png"}: an image output '
                     'needs an image input'):
    enhance.enhance(r, tmp_path / 'clip', tmp_path / 'x.png', progress=False)
  assert not (tmp_path / 'x.png').exists()


# ------------------------------------------------------------ bad inputs (CLI)


def _truncated_mp4(tmp: Path) -> Path:
  data = write_video(tmp / 'full.mp4', smooth_frames(12, 32, 32)).read_bytes()
  (tmp / 'full.mp4').unlink()
  path = tmp / 'cut.mp4'
  path.write_bytes(data[:len(data) // 2])
  return path


def _truncated_mkv(tmp: Path) -> Path:
  """Decodes fine for a while: the error comes after frames were restored."""
  data = write_video(tmp / 'full.mkv', smooth_frames(12, 32, 32)).read_bytes()
  (tmp / 'full.mkv').unlink()
  path = tmp / 'cut.mkv'
  path.write_bytes(data[:len(data) * 8 // 10])
  return path


def _empty_folder(tmp: Path) -> Path:
  (tmp / 'empty').mkdir()
  return tmp / 'empty'


def _mixed_sizes(tmp: Path) -> Path:
  (tmp / 'mixed').mkdir()
  frames.write_image(tmp / 'mixed' / '00.png', np.zeros((16, 16, 3), np.float32))
  frames.write_image(tmp / 'mixed' / '01.png', np.zeros((16, 18, 3), np.float32))
  return tmp / 'mixed'


def _bundle_with(field: str, value):
  def make(tmp: Path, bundle_path: Path) -> Path:
    copy = tmp / 'bundle'
    shutil.copytree(bundle_path, copy)
    raw = json.loads((copy / 'bundle.json').read_text())
    raw[field] = value
    (copy / 'bundle.json').write_text(json.dumps(raw))
    return copy
  return make


@pytest.mark.parametrize('make_input,make_bundle,expected', [
    (_truncated_mp4, None, r'{input}: not a readable video'),
    (_truncated_mkv, None, r'{input}: truncated video: decoded \d+ of the 12 frames'),
    (_empty_folder, None, r'{input}: no frames and no clip folders'),
    (_mixed_sizes, None, r'{input}/01.png: size 18x16 differs from 16x16'),
    (_empty_folder, _bundle_with('format_version', 2),
     r'{bundle}/bundle.json: format_version 2 is not supported'),
    (_empty_folder, _bundle_with('format', 'other.format'),
     r"{bundle}/bundle.json: format 'other.format' is not 'clarity_jax.bundle'"),
], ids=['truncated_mp4', 'truncated_mkv', 'empty_folder', 'mixed_sizes', 'bundle_version',
        'bundle_format'])
def test_bad_inputs_fail_in_one_line_leaving_no_output(model, tmp_path, make_input,
                                                       make_bundle, expected):
  src = tmp_path / 'src'
  src.mkdir()
  input_path = make_input(src)
  bundle_path = make_bundle(src, model[0]) if make_bundle else model[0]
  out_dir = tmp_path / 'out'
  out_dir.mkdir()
  output = out_dir / ('restored.mp4' if input_path.suffix else 'restored')
  proc = run_enhance(f'--bundle={bundle_path}', f'--input={input_path}', f'--output={output}',
                     '--compare', '--tile=0', '--batch=2')
  assert proc.returncode == 1
  errors = [line for line in proc.stderr.splitlines() if line.startswith('error: ')]
  assert len(errors) == 1 and 'Traceback' not in proc.stderr, proc.stderr[-2000:]
  pattern = expected.format(input=re.escape(str(input_path)), bundle=re.escape(str(bundle_path)))
  assert re.match('error: ' + pattern, errors[0]), errors[0]
  assert os.listdir(out_dir) == []  # no output, no compare, no temporary left


# ------------------------------------------------------- the real footage


def test_real_footage(model, shared_data, tmp_path):
  """The shared clips: a real H.264 720p video, a real LQ frame folder, one photo."""
  r = restorer(model, tile=256, tile_overlap=16, batch=1)
  coffee = shared_data / 'video' / 'coffee_1280x720.mp4'
  s = enhance.enhance(r, coffee, tmp_path / 'coffee.mp4', max_frames=2, progress=False)
  restored, (rate, _, _) = decode_all(tmp_path / 'coffee.mp4')
  assert restored.shape == (2, SCALE * 720, SCALE * 1280, 3) and s.frames == 2
  assert rate == fractions.Fraction(30000, 1001)

  street = shared_data / 'real_lq' / 'street_320x180'
  s = enhance.enhance(restorer(model, tile=0, batch=4), street, tmp_path / 'street',
                      compare=True, progress=False)
  names = sorted(p.name for p in street.iterdir() if p.suffix == '.png')
  assert s.frames == len(names) == 21
  assert sorted(os.listdir(tmp_path / 'street')) == names
  assert sorted(os.listdir(tmp_path / 'street_compare')) == names
  assert frames.read_image(tmp_path / 'street' / names[0]).shape == (360, 640, 3)
  assert frames.read_image(tmp_path / 'street_compare' / names[0]).shape == (360, 1280, 3)

  photo = sorted((shared_data / 'real_blur' / 'hide_1280x720').iterdir())[0]
  enhance.enhance(r, photo, tmp_path / f'photo{photo.suffix}', compare=True, progress=False)
  h, w = frames.image_size(photo)
  assert frames.image_size(tmp_path / f'photo{photo.suffix}') == (SCALE * h, SCALE * w)
  assert frames.image_size(tmp_path / f'photo_compare{photo.suffix}') == (
      SCALE * h, 2 * SCALE * w)


# ------------------------------------------------------------------- memory


def _peak_rss_mib(*args: str) -> float:
  """Peak resident memory of one enhance process (its own rusage, via wait4).

  glibc's malloc raises its mmap threshold as big arrays are freed, after which
  they come from the heap, whose fragmentation grows the RSS for the first ~50
  frames and then saturates. A fixed threshold (MALLOC_MMAP_THRESHOLD_) takes
  that allocator effect out, so the peak shows what the program itself holds.
  """
  env = dict(_env(), MALLOC_MMAP_THRESHOLD_=str(1 << 20))
  proc = subprocess.Popen([sys.executable, '-m', 'clarity_jax.enhance', '--progress=false',
                           *args], cwd=REPO, env=env, stdout=subprocess.DEVNULL,
                          stderr=subprocess.PIPE)
  _, status, usage = os.wait4(proc.pid, 0)
  proc.returncode = os.waitstatus_to_exitcode(status)
  assert proc.returncode == 0, proc.stderr.read()[-2000:]
  proc.stderr.close()
  return usage.ru_maxrss / 1024


def test_peak_memory_is_flat_in_video_length(model, tmp_path):
  """4x the frames, the same peak (within a third of what keeping each extra
  output frame, even as uint8, would add)."""
  h, w = 240, 320
  video = write_video(tmp_path / 'long.mp4', smooth_frames(48, h, w))
  common = [f'--bundle={model[0]}', f'--input={video}', '--tile=0', '--batch=2']
  short = _peak_rss_mib(*common, f'--output={tmp_path / "a"}', '--max_frames=12')
  long = _peak_rss_mib(*common, f'--output={tmp_path / "b"}')
  assert len(os.listdir(tmp_path / 'b')) == 48
  per_frame = SCALE * h * SCALE * w * 3 / 2 ** 20
  print(f'peak RSS {short:.0f} MiB (12 frames) vs {long:.0f} MiB (48 frames)')
  assert long - short < 36 * per_frame / 3
