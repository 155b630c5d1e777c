"""The enhance job and command: files in and out, side by side, bad inputs, memory."""

import fractions
import json
import os
from pathlib import Path
import re
import shutil
import subprocess

import numpy as np
from PIL import Image
import pytest

from clarity_jax.media import frames
from clarity_jax.media import writers
from clarity_jax.media import readers
from clarity_jax.inference import enhance
from clarity_jax.inference import restorer
from clarity_jax.inference import uncertainty_map
from clarity_jax.models import bicubic


# ------------------------------------------------------------- files in/out


def _written(folder: Path) -> list[str]:
  """A folder output's entries but its mark (writers.FOLDER_MARK_FILE), which
  must be there: it is what lets --overwrite replace the folder later."""
  names = os.listdir(folder)
  assert writers.FOLDER_MARK_FILE in names
  return [n for n in names if n != writers.FOLDER_MARK_FILE]


def test_cli_restores_a_video_frame_for_frame(tiny_model, run_enhance, smooth_frames,
                                              write_video, decode_all, tmp_path, psnr):
  s = tiny_model.scale
  src = smooth_frames(9, 40, 56)
  video = write_video(tmp_path / 'in.mp4', src, fps=fractions.Fraction(25))
  out = tmp_path / 'out' / 'restored.mp4'
  proc = run_enhance(f'--bundle={tiny_model.path}', f'--input={video}', f'--output={out}',
                     '--tile=32', '--tile_overlap=8', '--batch=4', '--compare',
                     '--preset=veryfast')
  assert proc.returncode == 0, proc.stderr[-3000:]
  # x264 records its settings in the stream: veryfast's, not the default medium's.
  for path in (out, tmp_path / 'out' / 'restored_compare.mp4'):
    assert b'subme=2' in path.read_bytes() and b'subme=7' not in path.read_bytes()
  restored, (rate, codec, pix_fmt) = decode_all(out)
  assert restored.shape == (9, s * 40, s * 56, 3)
  assert (rate, codec, pix_fmt) == (25, 'h264', 'yuv420p')
  side, _ = decode_all(tmp_path / 'out' / 'restored_compare.mp4')
  assert side.shape == (9, s * 40, 2 * s * 56, 3)
  # Left half: the project's bicubic of the decoded input (smooth, so x264 keeps it well).
  lq, _ = decode_all(video)
  upscaled = [bicubic.upsample_frame(f, s) for f in lq]
  assert psnr(side[:, :, :s * 56], np.round(np.stack(upscaled) * 255), peak=255) > 35
  # Frames out (lossless PNG) hold exactly what the engine computes on the
  # decoded frames: reflected windows, tiles, batches and all.
  engine = tiny_model.restorer(tile=32, tile_overlap=8, batch=4)
  summary = enhance.enhance(engine, video, tmp_path / 'frames', progress=False)
  assert summary.kind == 'frames' and summary.frames == 9
  assert sorted(_written(tmp_path / 'frames')) == [f'{i:06d}.png' for i in range(9)]
  want = [o for _, o in restorer.enhance_frames(engine, list(lq.astype(np.float32) / 255))]
  for i, w in enumerate(want):
    np.testing.assert_allclose(frames.read_image(tmp_path / 'frames' / f'{i:06d}.png'), w,
                               atol=0.5 / 255 + 1e-6)
  assert sorted(os.listdir(tmp_path / 'out')) == ['restored.mp4', 'restored_compare.mp4']


def test_uncertainty_maps_beside_videos_and_frames(tiny_head_model, smooth_frames,
                                                   write_video, decode_all, tmp_path, psnr):
  """--uncertainty: OUTPUT_uncertainty holds every frame's map over its legend, and
  --compare gains the map as a third column, the legend under all three."""
  s = tiny_head_model.scale
  src = smooth_frames(5, 40, 56)
  video = write_video(tmp_path / 'in.mp4', src, fps=fractions.Fraction(25))
  engine = tiny_head_model.restorer(tile=32, tile_overlap=8, batch=2)
  summary = enhance.enhance(engine, video, tmp_path / 'out.mp4', compare=True,
                            progress=False)
  assert summary.uncertainty == tmp_path / 'out_uncertainty.mp4'
  lq, _ = decode_all(video)
  want = list(restorer.enhance_frames_and_maps(engine, list(lq.astype(np.float32) / 255)))
  h, w = s * 40, s * 56
  maps, _ = decode_all(tmp_path / 'out_uncertainty.mp4')
  assert maps.shape == (5, h + uncertainty_map.legend_height(w), w, 3)
  pictures = np.stack([uncertainty_map.map_picture(m) for _, _, m in want])
  assert psnr(maps, pictures, peak=255) > 30  # H.264 at CRF 18
  side, _ = decode_all(tmp_path / 'out_compare.mp4')
  assert side.shape == (5, h + uncertainty_map.legend_height(3 * w), 3 * w, 3)
  assert psnr(side[:, :h, 2 * w:], pictures[:, :h], peak=255) > 30

  # Frames: lossless PNGs, the maps exactly, under the frames' own names.
  summary = enhance.enhance(engine, video, tmp_path / 'frames', progress=False)
  assert sorted(_written(tmp_path / 'frames_uncertainty')) == [f'{i:06d}.png'
                                                              for i in range(5)]
  for i, picture in enumerate(pictures):
    written = np.asarray(Image.open(tmp_path / 'frames_uncertainty' / f'{i:06d}.png'))
    np.testing.assert_array_equal(written, picture)
  # One image: one map image beside it.
  one = tmp_path / 'frames' / '000002.png'
  enhance.enhance(tiny_head_model.restorer(tile=0, batch=1), one, tmp_path / 'one.png',
                  progress=False)
  assert np.asarray(Image.open(tmp_path / 'one_uncertainty.png')).shape == (
      2 * h + uncertainty_map.legend_height(2 * w), 2 * w, 3)


def test_frame_folders_clip_trees_and_images(tiny_model, photo_windows, tmp_path, pil_bicubic):
  r = tiny_model.restorer(tile=32, tile_overlap=8, batch=2)
  lq = photo_windows(5, 24, 40)[:, 1]  # 5 frames 40x24
  clip = tmp_path / 'clip'
  clip.mkdir()
  names = ['a_01.png', 'a_02.png', 'a_03.jpg', 'a_10.png', 'a_11.png']
  for name, f in zip(names, lq):
    frames.write_image(clip / name, f, jpeg_quality=100)

  summary = enhance.enhance(r, clip, tmp_path / 'out', progress=False)
  assert (summary.kind, summary.frames) == ('frames', 5)
  assert sorted(_written(tmp_path / 'out')) == sorted(names)
  for name in names:
    assert frames.read_image(tmp_path / 'out' / name).shape == (48, 80, 3)

  root = tmp_path / 'root'
  shutil.copytree(clip, root / 'cam1')
  shutil.copytree(clip, root / 'cam2')
  enhance.enhance(r, root, tmp_path / 'tree', max_frames=3, progress=False)
  for cam in ('cam1', 'cam2'):
    assert sorted(os.listdir(tmp_path / 'tree' / cam)) == sorted(names[:3])

  image = clip / 'a_02.png'
  untiled = tiny_model.restorer(tile=0, batch=1)
  summary = enhance.enhance(untiled, image, tmp_path / 'one.png', compare=True,
                            progress=False)
  assert summary.frames == 1 and summary.compare == tmp_path / 'one_compare.png'
  restored = frames.read_image(tmp_path / 'one.png')
  side = frames.read_image(tmp_path / 'one_compare.png')
  assert restored.shape == (48, 80, 3) and side.shape == (48, 160, 3)
  np.testing.assert_allclose(side[:, 80:], restored, atol=1 / 255)
  # Left half: Keys a = -0.5 bicubic (the model's own skip), as PIL computes it
  # independently, up to the 8-bit rounding of the file.
  f = frames.read_image(image)
  np.testing.assert_allclose(side[:, :80], np.clip(pil_bicubic(f, 2), 0.0, 1.0),
                             atol=0.5 / 255 + 1e-5)
  # A single frame is its own neighbours: the network on (f, f, f).
  np.testing.assert_allclose(restored, tiny_model.reference(np.stack([f, f, f])[None])[0],
                             atol=1 / 255 + 1e-6)


def test_existing_outputs_are_kept_unless_overwrite(tiny_model, photo_windows, tmp_path):
  r = tiny_model.restorer(tile=0, batch=1)
  image = tmp_path / 'in.png'
  frames.write_image(image, photo_windows(1, 8, 8)[0, 1])
  out = tmp_path / 'out.png'
  out.write_bytes(b'precious')
  with pytest.raises(readers.MediaError, match=f'^{out}: already exists'):
    enhance.enhance(r, image, out, progress=False)
  with pytest.raises(readers.MediaError, match=f'^{out}: exists and is not an earlier '):
    enhance.enhance(r, image, out, overwrite=True, progress=False)
  assert out.read_bytes() == b'precious'  # the user's file, --overwrite or not
  out.unlink()
  enhance.enhance(r, image, out, progress=False)
  enhance.enhance(r, image, out, overwrite=True, progress=False)  # its own earlier output
  assert frames.read_image(out).shape == (16, 16, 3)
  # Never the input, nor a folder holding it: not even with --overwrite.
  (tmp_path / 'shots').mkdir()
  shutil.copy(image, tmp_path / 'shots' / 'a.png')
  for target in (tmp_path / 'shots', tmp_path, tmp_path / 'shots' / 'a.png'):
    with pytest.raises(enhance.EnhanceError, match=f'^{target}: the output would replace '
                       'the input'):
      enhance.enhance(r, tmp_path / 'shots' / 'a.png', target, overwrite=True, progress=False)
  assert sorted(os.listdir(tmp_path / 'shots')) == ['a.png']
  (tmp_path / 'clip').mkdir()
  shutil.copy(image, tmp_path / 'clip' / 'f.png')
  with pytest.raises(enhance.EnhanceError, match=f'^{tmp_path / "x.png"}: an image output '
                     'needs an image input'):
    enhance.enhance(r, tmp_path / 'clip', tmp_path / 'x.png', progress=False)
  assert not (tmp_path / 'x.png').exists()


# ------------------------------------------------------------ bad inputs (CLI)


def _truncated_mp4(tmp: Path, smooth_frames, write_video) -> Path:
  data = write_video(tmp / 'full.mp4', smooth_frames(12, 32, 32)).read_bytes()
  (tmp / 'full.mp4').unlink()
  path = tmp / 'cut.mp4'
  path.write_bytes(data[:len(data) // 2])
  return path


def _truncated_mkv(tmp: Path, smooth_frames, write_video) -> Path:
  """Decodes fine for a while: the error comes after frames were restored."""
  data = write_video(tmp / 'full.mkv', smooth_frames(12, 32, 32)).read_bytes()
  (tmp / 'full.mkv').unlink()
  path = tmp / 'cut.mkv'
  path.write_bytes(data[:len(data) * 8 // 10])
  return path


def _empty_folder(tmp: Path, *_) -> Path:
  (tmp / 'empty').mkdir()
  return tmp / 'empty'


def _mixed_sizes(tmp: Path, *_) -> Path:
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
    (_empty_folder, _bundle_with('format_version', 3),
     r'{bundle}/bundle.json: format_version 3 is not supported'),
    (_empty_folder, _bundle_with('format', 'other.format'),
     r"{bundle}/bundle.json: format 'other.format' is not 'clarity_jax.bundle'"),
], ids=['truncated_mp4', 'truncated_mkv', 'empty_folder', 'mixed_sizes', 'bundle_version',
        'bundle_format'])
def test_bad_inputs_fail_in_one_line_leaving_no_output(tiny_model, run_enhance, smooth_frames,
                                                       write_video, tmp_path, make_input,
                                                       make_bundle, expected):
  src = tmp_path / 'src'
  src.mkdir()
  input_path = make_input(src, smooth_frames, write_video)
  bundle_path = make_bundle(src, tiny_model.path) if make_bundle else tiny_model.path
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


def test_real_footage(tiny_model, shared_data, decode_all, tmp_path):
  """The shared clips: a real H.264 720p video, a real LQ frame folder, one photo."""
  s = tiny_model.scale
  r = tiny_model.restorer(tile=256, tile_overlap=16, batch=1)
  coffee = shared_data / 'video' / 'coffee_1280x720.mp4'
  summary = enhance.enhance(r, coffee, tmp_path / 'coffee.mp4', max_frames=2, progress=False)
  restored, (rate, _, _) = decode_all(tmp_path / 'coffee.mp4')
  assert restored.shape == (2, s * 720, s * 1280, 3) and summary.frames == 2
  assert rate == fractions.Fraction(30000, 1001)

  street = shared_data / 'real_lq' / 'street_320x180'
  summary = enhance.enhance(tiny_model.restorer(tile=0, batch=4), street,
                            tmp_path / 'street', compare=True, progress=False)
  names = sorted(p.name for p in street.iterdir() if p.suffix == '.png')
  assert summary.frames == len(names) == 21
  assert sorted(_written(tmp_path / 'street')) == names
  assert sorted(_written(tmp_path / 'street_compare')) == names
  assert frames.read_image(tmp_path / 'street' / names[0]).shape == (360, 640, 3)
  assert frames.read_image(tmp_path / 'street_compare' / names[0]).shape == (360, 1280, 3)

  photo = sorted((shared_data / 'real_blur' / 'hide_1280x720').iterdir())[0]
  enhance.enhance(r, photo, tmp_path / f'photo{photo.suffix}', compare=True, progress=False)
  h, w = frames.image_size(photo)
  assert frames.image_size(tmp_path / f'photo{photo.suffix}') == (s * h, s * w)
  assert frames.image_size(tmp_path / f'photo_compare{photo.suffix}') == (s * h, 2 * s * w)


# ------------------------------------------------------------------- memory


def _peak_rss_mib(command: list[str], repo: Path, env: dict) -> float:
  """Peak resident memory of one enhance process (its own rusage, via wait4).

  glibc's malloc raises its mmap threshold as big arrays are freed, after which
  they come from the heap, whose fragmentation grows the RSS for the first ~50
  frames and then saturates. A fixed threshold (MALLOC_MMAP_THRESHOLD_) takes
  that allocator effect out, so the peak shows what the program itself holds.
  """
  env = dict(env, MALLOC_MMAP_THRESHOLD_=str(1 << 20))
  proc = subprocess.Popen(command, cwd=repo, env=env, stdout=subprocess.DEVNULL,
                          stderr=subprocess.PIPE)
  _, status, usage = os.wait4(proc.pid, 0)
  proc.returncode = os.waitstatus_to_exitcode(status)
  assert proc.returncode == 0, proc.stderr.read()[-2000:]
  proc.stderr.close()
  return usage.ru_maxrss / 1024


def test_peak_memory_is_flat_in_video_length(tiny_model, repo, command_env, enhance_command,
                                             smooth_frames, write_video, tmp_path):
  """4x the frames, the same peak (within a third of what keeping each extra
  output frame, even as uint8, would add)."""
  h, w = 240, 320
  s = tiny_model.scale
  video = write_video(tmp_path / 'long.mp4', smooth_frames(32, h, w))
  common = [f'--bundle={tiny_model.path}', f'--input={video}', '--tile=0', '--batch=2']
  short = _peak_rss_mib(enhance_command(*common, f'--output={tmp_path / "a"}',
                                        '--max_frames=8'), repo, command_env)
  long = _peak_rss_mib(enhance_command(*common, f'--output={tmp_path / "b"}'), repo,
                       command_env)
  assert len(_written(tmp_path / 'b')) == 32
  per_frame = s * h * s * w * 3 / 2 ** 20
  print(f'peak RSS {short:.0f} MiB (8 frames) vs {long:.0f} MiB (32 frames)')
  assert long - short < 24 * per_frame / 3


def test_shards_cover_every_video_once_and_keep_their_videos():
  videos = [Path(f"/archive/cam{i:03d}_{'ab'[i % 2]}.mp4") for i in range(40)]
  for count in (1, 2, 3, 7):
    shards = [enhance.shard_videos(videos, i, count) for i in range(count)]
    assert sorted(v for shard in shards for v in shard) == sorted(videos)
    # A video's shard is its own: the others in the folder do not move it.
    for i, shard in enumerate(shards):
      assert all(enhance.shard_videos([v], i, count) == [v] for v in shard)
  assert all(shards)  # 40 names over 7 shards: none left idle


@pytest.mark.parametrize('text', ['2/2', '1', '-1/3', 'a/b', '0/0', ''])
def test_a_bad_shard_is_one_line(text):
  with pytest.raises(enhance.EnhanceError) as e:
    enhance.parse_shard(text)
  assert str(e.value) == f'--shard: want I/N with 0 <= I < N, e.g. 0/4; got {text!r}'


def test_parse_shard():
  assert enhance.parse_shard('3/8') == (3, 8) and enhance.parse_shard(' 0/1 ') == (0, 1)

