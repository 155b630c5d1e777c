"""Degrades a tree of sharp frame folders with eq. (1), to build evaluation sets.

The library of `python -m clarity_jax.degrade` (clarity_jax/cli/degrade.py).
OUTPUT gets the same clip folders and file names with frames `scale` times
smaller, and OUTPUT/degradation.json records the exact per-frame parameters of
every clip, the seed, the scale and the versions involved: the same inputs give
the same bytes. Each clip is one temporally coherent window (parameters drift
smoothly over the whole clip) and, unless the codec is off, goes through a real
H.264 encoder as a whole. Low light and rolling shutter (camera_effects.py) are
recorded with the rest ('low_light', 'rolling_shutter'; null: off).
"""

from __future__ import annotations

from collections.abc import Sequence
import json
from pathlib import Path
from typing import Any
import os
import zlib

from absl import logging
import av
import cv2
import ml_collections
import numpy as np
import tqdm

from clarity_jax import errors
from clarity_jax import files
from clarity_jax.data import degradation_config
from clarity_jax.data import degradations
from clarity_jax.media import frames

SIDECAR = 'degradation.json'
# LQ frames named .jpg are stored at quality 100 so storage adds next to nothing to
# the degradation the sidecar describes.
_JPEG_QUALITY = 100


class OutputError(errors.PathError):
  """The output folder cannot be used: '<path>: <what>'."""


def get_config() -> ml_collections.ConfigDict:
  """The default of the command's --config: this module read as a config file.

  The package's degradation model under `degradation`, where a training config
  has it, so that --config.degradation.FIELD=VALUE overrides it and
  --config=configs/FILE.py takes a training config's ranges instead. It is not
  read from configs/default.py: an installed package has no configs/ folder.
  """
  return ml_collections.ConfigDict({'degradation': degradation_config.get_config()})


def with_codec(cfg: ml_collections.ConfigDict, codec: str) -> ml_collections.ConfigDict:
  """The degradation config with the video codec always on (codec) or off ('none')."""
  cfg = ml_collections.ConfigDict(cfg.to_dict())
  cfg.video_codec_prob = 0.0 if codec == 'none' else 1.0
  if codec != 'none':
    cfg.video_codec = codec
  return cfg


def with_camera_effects(cfg: ml_collections.ConfigDict, low_light: bool,
                        rolling_shutter: bool) -> ml_collections.ConfigDict:
  """The degradation config with low light / rolling shutter on every clip where asked
  (else as the config says: off by default)."""
  cfg = ml_collections.ConfigDict(cfg.to_dict())
  if low_light:
    cfg.low_light_prob = 1.0
  if rolling_shutter:
    cfg.rolling_shutter_prob = 1.0
  return cfg


def clip_rng(seed: int, clip: str) -> np.random.Generator:
  """Per-clip stream keyed by the clip name: adding clips leaves the others unchanged."""
  return np.random.default_rng([seed, zlib.crc32(clip.encode('utf-8'))])


def _check_output(output: Path) -> None:
  """Refuses a file, or a folder holding anything but an earlier degrade output
  (whose clips a rerun replaces)."""
  if output.exists() and not output.is_dir():
    raise OutputError(output, 'exists and is not a folder')
  if output.is_dir() and any(output.iterdir()) and not (output / SIDECAR).is_file():
    raise OutputError(output, f'not empty and not an earlier degrade output (no {SIDECAR}); '
                      'choose a new or empty folder')


def degrade_clip(name: str, paths: Sequence[Path], size: tuple[int, int], out_dir: Path,
                 scale: int, seed: int, cfg: Any, progress: tqdm.tqdm) -> dict[str, Any]:
  """Degrades one clip as one window into out_dir; returns its sidecar record."""
  h, w = size
  hc, wc = h - h % scale, w - w % scale
  if hc == 0 or wc == 0:
    raise frames.FrameError(paths[0], f'frames of {w}x{h} are smaller than the scale {scale}')
  if (hc, wc) != (h, w):
    logging.warning('%s: HR frames %dx%d cropped to %dx%d (multiples of %d)', paths[0].parent,
                    w, h, wc, hc, scale)
  rng = clip_rng(seed, name)
  params = degradations.sample_window_params(rng, cfg, len(paths), scale)

  def read(path: Path) -> np.ndarray:
    hr = frames.read_image(path)[:hc, :wc]
    if hr.shape[:2] != (hc, wc):  # the header said otherwise: a damaged file
      raise frames.FrameError(path, f'decoded size {hr.shape[1]}x{hr.shape[0]} differs from '
                              f'the header size {w}x{h}')
    return hr

  lq = []
  # Frame by frame; a rolling shutter reads one frame ahead (apply_window's frames).
  captured = degradations.shutter_frames(map(read, paths), params)
  for t, hr in enumerate(captured):
    lq.append(degradations.degrade_frame(hr, params, t, rng))
    progress.update()
  lq = degradations.compress_window(np.stack(lq), params)
  for path, frame in zip(paths, lq):
    frames.write_image(out_dir / path.name, frame, jpeg_quality=_JPEG_QUALITY)
  return {'frames': [p.name for p in paths], 'hr_size': [h, w],
          'cropped_hr_size': [hc, wc] if (hc, wc) != (h, w) else None,
          'lq_size': [hc // scale, wc // scale], 'params': params}


def degrade_tree(input_root: Path, output: Path, scale: int, seed: int,
                 cfg: ml_collections.ConfigDict) -> dict[str, Any]:
  """Writes the degraded copy of input_root and its sidecar; returns the sidecar.

  Everything is written to a temporary sibling folder and renamed into place when
  complete, so an error leaves no partial output under the final name.
  """
  clips = frames.list_clips(input_root)
  for name, paths in clips.items():
    # Clip and frame names go into the sidecar (JSON, UTF-8) and seed the clip's
    # degradation: a name the file system holds as undecodable bytes has neither.
    for path in (paths[0].parent, *paths):
      if path.name != path.name.encode('utf-8', 'surrogateescape').decode('utf-8', 'replace'):
        shown = os.fsencode(path).decode('utf-8', 'backslashreplace')
        raise frames.FrameError(shown, 'name is not valid UTF-8; rename it')
  sizes = {name: frames.check_clip_sizes(name, paths) for name, paths in clips.items()}
  single = frames.is_one_clip(clips, input_root)
  _check_output(output)
  sidecar = {
      'program': 'clarity_jax.degrade', 'version': files.package_version(), 'seed': seed,
      'scale': scale, 'codec': _codec_name(cfg), 'layout': 'single_clip' if single else 'clips',
      'libraries': {'numpy': np.__version__, 'opencv': cv2.__version__, 'av': av.__version__},
      'degradation_config': cfg.to_dict(), 'clips': {}}
  total = sum(len(p) for p in clips.values())
  # The whole output is built under a hidden name and moved into place complete:
  # a failing clip, Ctrl-C or SIGTERM leaves no partial output (nor an empty folder).
  output.parent.mkdir(parents=True, exist_ok=True)
  tmp = files.temp_sibling(output)
  files.remove(tmp)
  tmp.mkdir()
  try:
    with tqdm.tqdm(total=total, unit='frame', desc='degrade', disable=None) as progress:
      for name, paths in clips.items():
        folder = tmp if single else tmp / name
        folder.mkdir(exist_ok=True)
        sidecar['clips'][name] = degrade_clip(name, paths, sizes[name], folder, scale, seed,
                                              cfg, progress)
    _write_json(tmp / SIDECAR, sidecar)
    files.replace_folder(tmp, output)
  finally:
    files.remove(tmp)
  return sidecar


def _codec_name(cfg: Any) -> str:
  return cfg.video_codec if cfg.video_codec_prob > 0 else 'none'


def _write_json(path: Path, data: dict[str, Any]) -> None:
  files.write_text(path, json.dumps(data, indent=1) + '\n')
