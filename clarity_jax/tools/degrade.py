"""Degrades a tree of sharp frame folders with eq. (1), to build evaluation sets.

  python -m clarity_jax.degrade --input=HR_ROOT --output=LQ_ROOT --scale=4 --seed=0

LQ_ROOT gets the same clip folders and file names with frames `scale` times
smaller, and LQ_ROOT/degradation.json records the exact per-frame parameters of
every clip, the seed, the scale and the versions involved: the same command
gives the same bytes. Each clip is one temporally coherent window (parameters
drift smoothly over the whole clip) and, unless --codec=none, goes through a
real H.264 encoder as a whole. Ranges come from --config (its `degradation`
part), e.g. --config.degradation.noise_prob=0.
"""

from collections.abc import Sequence
import importlib.metadata
import json
import os
from pathlib import Path
import shutil
from typing import Any
import zlib

from absl import app
from absl import flags
from absl import logging
import av
import cv2
import ml_collections
from ml_collections import config_flags
import numpy as np
import tqdm

from clarity_jax.cli import common as cli_errors
from clarity_jax.data import degradations
from clarity_jax.data import frames
from clarity_jax import errors

SIDECAR = 'degradation.json'
# LQ frames named .jpg are stored at quality 100 so storage adds next to nothing to
# the degradation the sidecar describes.
_JPEG_QUALITY = 100
_DEFAULT_CONFIG = Path(__file__).resolve().parent.parent / 'configs' / 'default.py'

_INPUT = flags.DEFINE_string('input', None, 'HR_ROOT/<clip>/<frames>, or one clip folder.')
_OUTPUT = flags.DEFINE_string('output', None, 'LQ_ROOT: new, empty, or an earlier output.')
_SCALE = flags.DEFINE_integer('scale', 4, 'Downsampling factor: 1, 2 or 4.')
_SEED = flags.DEFINE_integer('seed', 0, 'Same seed, same input: identical output bytes.')
_CODEC = flags.DEFINE_enum('codec', 'libx264', ['libx264', 'none'],
                           'Video codec applied to each whole clip, or none.')
config_flags.DEFINE_config_file('config', str(_DEFAULT_CONFIG),
                                'Config file whose `degradation` field gives the ranges.')
flags.mark_flags_as_required(['input', 'output'])
flags.register_validator('scale', lambda s: s in (1, 2, 4), '--scale must be 1, 2 or 4')


class OutputError(errors.PathError):
  """The output folder cannot be used: '<path>: <what>'."""


def package_version() -> str:
  try:
    return importlib.metadata.version('clarity_jax')
  except importlib.metadata.PackageNotFoundError:
    return 'unknown'


def with_codec(cfg: ml_collections.ConfigDict, codec: str) -> ml_collections.ConfigDict:
  """The degradation config with the video codec always on (codec) or off ('none')."""
  cfg = ml_collections.ConfigDict(cfg.to_dict())
  cfg.video_codec_prob = 0.0 if codec == 'none' else 1.0
  if codec != 'none':
    cfg.video_codec = codec
  return cfg


def clip_rng(seed: int, clip: str) -> np.random.Generator:
  """Per-clip stream keyed by the clip name: adding clips leaves the others unchanged."""
  return np.random.default_rng([seed, zlib.crc32(clip.encode('utf-8'))])


def _check_output(output: Path) -> None:
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
  lq = []
  for t, path in enumerate(paths):
    hr = frames.read_image(path)[:hc, :wc]
    if hr.shape[:2] != (hc, wc):  # the header said otherwise: a damaged file
      raise frames.FrameError(path, f'decoded size {hr.shape[1]}x{hr.shape[0]} differs from '
                              f'the header size {w}x{h}')
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
  """Writes the degraded copy of input_root and its sidecar; returns the sidecar."""
  clips = frames.list_clips(input_root)
  sizes = {name: frames.check_clip_sizes(name, paths) for name, paths in clips.items()}
  single = frames.is_one_clip(clips, input_root)
  _check_output(output)
  output.mkdir(parents=True, exist_ok=True)
  sidecar = {
      'program': 'clarity_jax.degrade', 'version': package_version(), 'seed': seed,
      'scale': scale, 'codec': _codec_name(cfg), 'layout': 'single_clip' if single else 'clips',
      'libraries': {'numpy': np.__version__, 'opencv': cv2.__version__, 'av': av.__version__},
      'degradation_config': cfg.to_dict(), 'clips': {}}
  total = sum(len(p) for p in clips.values())
  with tqdm.tqdm(total=total, unit='frame', desc='degrade', disable=None) as progress:
    for name, paths in clips.items():
      final = output if single else output / name
      tmp = final.with_name(f'.{final.name}.tmp-{os.getpid()}')
      shutil.rmtree(tmp, ignore_errors=True)
      tmp.mkdir(parents=True)
      try:
        sidecar['clips'][name] = degrade_clip(name, paths, sizes[name], tmp, scale, seed, cfg,
                                              progress)
        if single:  # the sidecar moves in with the frames
          _write_json(tmp / SIDECAR, sidecar)
        frames.replace_folder(tmp, final)
      finally:
        shutil.rmtree(tmp, ignore_errors=True)
  if not single:
    _write_json(output / SIDECAR, sidecar)
  return sidecar


def _codec_name(cfg: Any) -> str:
  return cfg.video_codec if cfg.video_codec_prob > 0 else 'none'


def _write_json(path: Path, data: dict[str, Any]) -> None:
  tmp = path.with_name(f'.{path.name}.{os.getpid()}.tmp')
  tmp.write_text(json.dumps(data, indent=1) + '\n')
  os.replace(tmp, path)


@cli_errors.exit_on_error()
def main(argv: Sequence[str]) -> None:
  cli_errors.start(argv)
  cfg = with_codec(flags.FLAGS.config.degradation, _CODEC.value)
  degrade_tree(Path(_INPUT.value), Path(_OUTPUT.value), _SCALE.value, _SEED.value, cfg)


if __name__ == '__main__':
  app.run(main)
