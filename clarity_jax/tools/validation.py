"""The validation protocol on real footage: held-out clips, three fixed degradations
from mild to heavy, and the gain over bicubic per setting and per clip, in minutes
on a CPU.

  python -m clarity_jax.validate --clips=HELD_OUT.mp4,OTHER_CLIP/ \\
      [--bundle=BUNDLE | --workdir=RUN[@STEP]] [--output=DIR]

Every recipe decision is made on this table, so it must not move between runs:
  ground truth  the first `num_frames` frames of each clip (a video file or a folder
                of frames), area-downscaled by `downscale` (2: the 1280x720 H.264
                sources become 640x360 targets with the codec's noise averaged away);
  settings      SETTINGS below: motion blur, x`scale` bicubic downsampling, Gaussian
                noise, JPEG and H.264 at a fixed strength each, applied by the degrade
                command's code (tools/degrade.py) at a fixed seed;
  scores        evaluate's (evaluation/evaluate.py): PSNR/SSIM on RGB, `scale` pixels
                of border cropped, every frame, averaged per clip then over clips.
The degraded sets are cached under a key of everything above, so later runs only
restore and score.
"""

from __future__ import annotations

from collections.abc import Sequence
import hashlib
import json
import os
from pathlib import Path
import tempfile
from typing import Any

import cv2
import ml_collections
import numpy as np

from clarity_jax import files
from clarity_jax.data import degradation_config
from clarity_jax.media import frames as frames_lib
from clarity_jax.media import readers
from clarity_jax.evaluation import clips as clips_lib
from clarity_jax.evaluation import evaluate as evaluate_lib
from clarity_jax.evaluation import methods as methods_lib
from clarity_jax.tools import degrade

# (low, high) of each varied parameter; the rest of eq. (1) is fixed below. Mild is
# a steady handheld or fixed camera and a good stream, heavy a shaking dashcam at a
# low bitrate in poor light.
SETTINGS: dict[str, dict[str, tuple[float, float]]] = {
    'mild': dict(motion_length_range=(4.0, 6.0), gaussian_sigma255_range=(1.0, 2.0),
                 jpeg_quality_range=(85, 95), video_crf_range=(20, 22)),
    'moderate': dict(motion_length_range=(9.0, 12.0), gaussian_sigma255_range=(3.0, 5.0),
                     jpeg_quality_range=(60, 75), video_crf_range=(25, 27)),
    'heavy': dict(motion_length_range=(15.0, 19.0), gaussian_sigma255_range=(6.0, 10.0),
                  jpeg_quality_range=(35, 50), video_crf_range=(30, 32)),
}
PROTOCOL_VERSION = 1


def setting_config(name: str) -> ml_collections.ConfigDict:
  """Eq. (1) of one setting: every stage on, one kernel family, one resize."""
  if name not in SETTINGS:
    raise clips_lib.EvaluateError('--settings', f'unknown setting {name!r}; expected '
                                  f'{", ".join(SETTINGS)}')
  cfg = degradation_config.get_config()
  cfg.blur_prob = 1.0
  cfg.kernel_types = ('motion',)
  cfg.kernel_probs = (1.0,)
  cfg.resize_modes = ('bicubic',)
  cfg.resize_probs = (1.0,)
  cfg.noise_prob = 1.0
  cfg.poisson_prob = 0.0
  cfg.gray_noise_prob = 0.0
  cfg.jpeg_prob = 1.0
  cfg.video_codec_prob = 1.0
  cfg.second_round_prob = 0.0
  cfg.where = 'host'
  for key, value in SETTINGS[name].items():
    cfg[key] = value
  return cfg


def _clip_key(path: Path) -> dict[str, Any]:
  stat = path.stat() if path.is_file() else None
  if path.is_dir():  # a frame folder: its files' names, sizes and times
    stat_list = [(p.name, p.stat().st_size, p.stat().st_mtime_ns)
                 for p in sorted(path.iterdir()) if p.is_file()]
    return {'path': str(path.resolve()), 'files': stat_list}
  return {'path': str(path.resolve()), 'size': stat.st_size, 'mtime': stat.st_mtime_ns}


def _write_ground_truth(clip: Path, folder: Path, num_frames: int, downscale: int) -> None:
  """The first `num_frames` frames of `clip`, area-downscaled, as PNGs in `folder`."""
  source = readers.open_input(clip)
  if source.kind not in ('video', 'frames'):
    raise clips_lib.EvaluateError(clip, f'a validation clip must be one video or one '
                                  f'folder of frames, not {source.kind}')
  folder.mkdir(parents=True)
  (reader,) = source.clips.values()
  count = 0
  for frame in reader:
    if count == num_frames:
      break
    h, w = frame.shape[:2]
    if downscale > 1:
      frame = cv2.resize(frame, (w // downscale, h // downscale), interpolation=cv2.INTER_AREA)
    frames_lib.write_image(folder / f'{count:05d}.png', frame)
    count += 1
  if count < 3:
    raise clips_lib.EvaluateError(clip, f'has {count} frames; validation needs at least 3')


def prepare(clips: Sequence[str | os.PathLike], cache: str | os.PathLike, *, scale: int = 4,
            num_frames: int = 24, downscale: int = 2, seed: int = 0,
            settings: Sequence[str] = tuple(SETTINGS)) -> Path:
  """Builds (or finds) the ground truth and the degraded sets; returns their folder:
  gt/<clip>/ and <setting>/<clip>/, complete or absent (built under a temporary name)."""
  clips = [Path(c) for c in clips]
  names = [c.stem if c.is_file() else c.name for c in clips]
  if len(set(names)) != len(names):
    raise clips_lib.EvaluateError('--clips', f'clip names must be distinct: {names}')
  for c in clips:
    if not c.exists():
      raise clips_lib.EvaluateError(c, 'no such file or folder')
  spec = {'protocol': PROTOCOL_VERSION, 'clips': [_clip_key(c) for c in clips],
          'scale': scale, 'num_frames': num_frames, 'downscale': downscale, 'seed': seed,
          'settings': {s: setting_config(s).to_dict() for s in settings}}
  key = hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:16]
  final = Path(cache) / key
  if (final / 'validation_set.json').is_file():
    return final
  final.parent.mkdir(parents=True, exist_ok=True)
  tmp = files.temp_sibling(final)
  files.remove(tmp)
  try:
    for clip, name in zip(clips, names):
      _write_ground_truth(clip, tmp / 'gt' / name, num_frames, downscale)
    for i, setting in enumerate(settings):
      for name in names:  # clip by clip: the same layout whether one clip or several
        degrade.degrade_tree(tmp / 'gt' / name, tmp / setting / name, scale, seed + i,
                             setting_config(setting))
    files.write_text(tmp / 'validation_set.json', json.dumps(spec, indent=1) + '\n')
    files.replace_folder(tmp, final)
  finally:
    files.remove(tmp)
  return final


def validate(methods: Sequence[methods_lib.Method], sets: Path, *, scale: int,
             settings: Sequence[str] = tuple(SETTINGS), output: str | os.PathLike | None = None,
             progress: bool = True) -> dict[str, Any]:
  """Scores `methods` (bicubic first) on every setting; returns the gains table:
  {setting: {method: {clip | 'mean': {psnr, ssim, gain_psnr, gain_ssim}}}}."""
  table: dict[str, Any] = {}
  with tempfile.TemporaryDirectory() as scratch:
    for setting in settings:
      out = Path(output, setting) if output else Path(scratch, setting)
      _, clips = clips_lib.pair_clips(sets / setting, sets / 'gt', scale=scale)
      report = evaluate_lib.evaluate(methods, clips, out, scale=scale, num_pictures=len(clips),
                                     save_frames=False, progress=progress)
      base = report['results'][methods[0].name]
      table[setting] = {}
      for method in methods[1:]:
        result = report['results'][method.name]
        rows = {c: (e['mean'], base['clips'][c]['mean']) for c, e in result['clips'].items()}
        rows['mean'] = (result['mean'], base['mean'])
        table[setting][method.name] = {
            row: {'psnr': m['psnr'], 'ssim': m['ssim'], 'bicubic_psnr': b['psnr'],
                  'bicubic_ssim': b['ssim'], 'gain_psnr': m['psnr'] - b['psnr'],
                  'gain_ssim': m['ssim'] - b['ssim']} for row, (m, b) in rows.items()}
  return table


def markdown(table: dict[str, Any]) -> str:
  """The gains table: one row per setting, method and clip (mean last)."""
  lines = ['| setting | method | clip | bicubic PSNR | PSNR | gain dB | gain SSIM |',
           '| --- | --- | --- | ---: | ---: | ---: | ---: |']
  for setting, by_method in table.items():
    for method, rows in by_method.items():
      for clip, r in rows.items():
        lines.append(f'| {setting} | {method} | {"**mean**" if clip == "mean" else clip} | '
                     f'{r["bicubic_psnr"]:.2f} | {r["psnr"]:.2f} | {r["gain_psnr"]:+.2f} | '
                     f'{r["gain_ssim"]:+.4f} |')
  return '\n'.join(lines) + '\n'


def mean_gain(table: dict[str, Any], method: str) -> dict[str, float]:
  """{setting: mean PSNR gain} of one method, for comparing runs."""
  return {s: float(np.round(t[method]['mean']['gain_psnr'], 4)) for s, t in table.items()}
