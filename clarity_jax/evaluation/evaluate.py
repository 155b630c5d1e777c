"""Scores restorations against ground truth: metrics.json, results.md, pictures.

  python -m clarity_jax.evaluate --bundle=BUNDLE[,BUNDLE2,DEBLUR+SR,...] \\
      [--workdir=RUN[,RUN2]] --lq=LQ_ROOT --gt=GT_ROOT --output=DIR \\
      [--names=a,b,...] [--protocol=basicsr|fmanet] [--max_frames=N] \\
      [--lpips_weights=FILE] [--num_pictures=4] [--tile=0] [--scale=S]

Every frame of every clip of LQ_ROOT/<clip>/ is restored by every method with the
sliding window of inference/restorer.py (reflected at clip edges) and scored against
GT_ROOT/<clip>/ (frames paired by name):

  methods   bicubic (always, first), each bundle, each training workdir (latest
            checkpoint); `A+B` runs A then B on A's output (methods.py);
  protocol  basicsr: all frames; fmanet: the first and last frame of each clip
            dropped; the numbers are those of scores.py, averaged per clip, then
            over clips (docs/evaluation.md);
  outputs   DIR/metrics.json (per frame, per clip, mean; the protocol), DIR/results.md
            (tables; report.py), DIR/pictures/*.png (pictures.py), DIR/frames/<method>/
            <clip>/ (the scored 8-bit outputs, --save_frames).

Inputs are checked before anything is restored (clips.py), and DIR is assembled
under a temporary name and moved into place only when complete. How to score REDS4
beside the published numbers: docs/evaluation.md.
"""

from __future__ import annotations

import os
from pathlib import Path
import re
import time
from typing import Any, Iterator, Sequence
import zlib

import numpy as np
import tqdm

from clarity_jax import files
from clarity_jax.media import frames as frames_lib
from clarity_jax.evaluation import calibration
from clarity_jax.evaluation import clips as clips_lib
from clarity_jax.evaluation import methods as methods_lib
from clarity_jax.evaluation import pictures
from clarity_jax.evaluation import report as report_lib
from clarity_jax.evaluation import scores
from clarity_jax.models import lpips as lpips_lib

FRAMES_DIR = 'frames'


def run(*, lq: str, gt: str, output: str, bundles: Sequence[str] = (),
        workdirs: Sequence[str] = (), names: Sequence[str] = (), protocol: str = 'basicsr',
        scale: int | None = None, max_frames: int | None = None, lpips_weights: str = '',
        num_pictures: int = 4, save_frames: bool = True, tile: int = 0,
        tile_overlap: int = 16, batch: int = 1, dtype: str = 'float32', engine: str = 'jax',
        progress: bool = True) -> dict[str, Any]:
  """The evaluate command, its flags as arguments: checks the inputs, loads the
  methods (bicubic, then `bundles`, then `workdirs`), evaluates; returns
  metrics.json's dict."""
  specs = methods_lib.method_specs(bundles, workdirs, names)
  if scale is not None and scale not in clips_lib.SCALES:
    raise clips_lib.EvaluateError('--scale', f'must be 1, 2 or 4, got {scale}')
  scale, clips = clips_lib.pair_clips(lq, gt, scale=scale, max_frames=max_frames)
  clips_lib.check_protocol(clips, protocol)
  methods = methods_lib.load_methods(specs, scale, dtype=dtype, tile=tile,
                                     tile_overlap=tile_overlap, batch=batch, engine=engine)
  lpips_model = lpips_lib.maybe_load_lpips(lpips_weights)
  lpips = scores.LpipsScorer(lpips_model) if lpips_model is not None else None
  return evaluate(methods, clips, output, scale=scale, protocol=protocol, lpips=lpips,
                  lpips_path=lpips_weights, num_pictures=num_pictures,
                  save_frames=save_frames, max_frames=max_frames, tile=tile,
                  sources={'lq': lq, 'gt': gt}, progress=progress)


def evaluate(methods: Sequence[methods_lib.Method], clips: Sequence[clips_lib.Clip],
             output: str | os.PathLike, *, scale: int, protocol: str = 'basicsr',
             lpips: scores.LpipsScorer | None = None, lpips_path: str = '',
             num_pictures: int = 4, save_frames: bool = True, max_frames: int | None = None,
             tile: int = 0, sources: dict[str, str] | None = None,
             progress: bool = True) -> dict[str, Any]:
  """Restores, scores and writes everything under `output`; returns metrics.json's dict.

  `output` must be new, empty or an earlier evaluation (then replaced once the new
  one is complete); it is assembled in a hidden sibling folder meanwhile.
  """
  clips_lib.check_protocol(clips, protocol)
  names = [m.name for m in methods]
  if len(set(names)) != len(names) or len({folder_name(n) for n in names}) != len(names):
    raise clips_lib.EvaluateError(output, 'method names must be distinct (as folder names '
                                  f'too): {names}')
  output = Path(output)
  if output.exists() and (not output.is_dir() or (
      any(output.iterdir()) and not (output / report_lib.METRICS_FILE).is_file())):
    raise clips_lib.EvaluateError(output, 'exists and is not an earlier evaluation (no '
                                  f'{report_lib.METRICS_FILE}); choose a new or empty '
                                  'folder')
  output.parent.mkdir(parents=True, exist_ok=True)
  tmp = files.temp_sibling(output, 'tmp')
  files.remove(tmp)
  (tmp / pictures.PICTURES_DIR).mkdir(parents=True)
  try:
    report = _evaluate_into(tmp, methods, clips, scale=scale, protocol=protocol,
                            lpips=lpips, lpips_path=lpips_path, num_pictures=num_pictures,
                            save_frames=save_frames, max_frames=max_frames, tile=tile,
                            sources=sources or {}, progress=progress)
    files.replace_folder(tmp, output)
  except BaseException:
    files.remove(tmp)
    raise
  return report


def folder_name(name: str) -> str:
  """A method's folder name: 'deblur -> sr + bicubic' -> 'deblur_to_sr_bicubic'."""
  name = name.replace('->', ' to ')
  return re.sub(r'[^A-Za-z0-9._-]+', '_', name).strip('_') or 'method'


def _evaluate_into(tmp: Path, methods: Sequence[methods_lib.Method],
                   clips: Sequence[clips_lib.Clip], *, scale: int, protocol: str,
                   lpips: scores.LpipsScorer | None, lpips_path: str, num_pictures: int,
                   save_frames: bool, max_frames: int | None, tile: int,
                   sources: dict[str, str], progress: bool) -> dict[str, Any]:
  """The whole evaluation, written into the folder `tmp`."""
  start = time.perf_counter()
  shows = pictures.picture_frames(clips, protocol, num_pictures)
  results = {m.name: {'clips': {}, 'seconds': 0.0, 'frames_timed': 0} for m in methods}
  samples = {m.name: calibration.Samples() for m in methods if m.maps}
  written, calibration_pictures = [], []
  total = sum(len(c.lq) for c in clips) * len(methods)
  with tqdm.tqdm(total=total, unit='frame', desc='evaluate', disable=not progress,
                 dynamic_ncols=True) as bar:
    for clip in clips:
      lq, gt = _read_clip(clip, scale)
      scored = set(clips_lib.included_frames(len(lq), protocol))
      panels = []
      for method in methods:
        bar.set_postfix_str(f'{clip.name}: {method.name}')
        folder = tmp / FRAMES_DIR / folder_name(method.name) / clip.name
        if save_frames:
          folder.mkdir(parents=True, exist_ok=True)
        outputs, entry, shown_map = _restore_and_score(
            method, clip, lq, gt, scored=scored, crop=scale, lpips=lpips,
            folder=folder if save_frames else None, timing=results[method.name], bar=bar,
            samples=samples.get(method.name), shown=shows.get(clip.name))
        results[method.name]['clips'][clip.name] = entry
        if clip.name in shows:
          i = shows[clip.name]
          panels.append((method.name, f'{method.name} '
                         f'{entry["frames"][clip.gt[i].name]["psnr"]:.2f} dB', outputs[i]))
          if shown_map is not None:
            calibration_pictures.append(pictures.write_uncertainty_picture(
                tmp, f'uncertainty_{folder_name(method.name)}_{folder_name(clip.name)}',
                clip, i, method.name, outputs[i], gt[i], shown_map))
      if clip.name in shows:
        i = shows[clip.name]
        written.append(pictures.write_picture(tmp, folder_name(clip.name), clip, i, panels,
                                              gt[i], border=scale))

  for name, method_samples in samples.items():
    if method_samples:
      results[name]['calibration'] = calibration.summarize(method_samples)
      calibration_pictures.append(pictures.write_curves_picture(
          tmp, f'calibration_{folder_name(name)}', name,
          results[name]['calibration']['curves']))
  for entry in results.values():
    entry['mean'] = scores.method_means(entry['clips'].values())
    entry['ms_per_frame'] = (1000.0 * entry['seconds'] / entry['frames_timed']
                             if entry['frames_timed'] else None)
  report = {
      'program': 'clarity_jax.evaluate',
      'version': files.package_version(),
      'date': time.strftime('%Y-%m-%d %H:%M:%S %Z'),
      'machine': report_lib.machine_description(),
      'sources': sources,
      'protocol': report_lib.protocol_record(protocol, scale, clips, max_frames, lpips,
                                             lpips_path, tile),
      'methods': {m.name: m.info for m in methods},
      'results': results,
      'pictures': written,
      'calibration_pictures': calibration_pictures,
      'seconds': time.perf_counter() - start,
  }
  report_lib.write(tmp, report)
  return report


def _read_clip(clip: clips_lib.Clip, scale: int
               ) -> tuple[list[np.ndarray], list[np.ndarray]]:
  """(LQ frames as float32 [0, 1], GT frames as uint8 cut to scale * the LQ size)."""
  h, w = clip.lq_size
  gt = [files.to_uint8(frames_lib.read_image(p))[:scale * h, :scale * w] for p in clip.gt]
  lq = [frames_lib.read_image(p) for p in clip.lq]
  for path, frame in zip(clip.lq, lq):
    if frame.shape[:2] != (h, w):  # the header said otherwise: a damaged file
      raise frames_lib.FrameError(path, f'decoded size {frame.shape[1]}x'
                                  f'{frame.shape[0]} differs from the header {w}x{h}')
  return lq, gt


def _restore_and_score(method: methods_lib.Method, clip: clips_lib.Clip,
                       lq: list[np.ndarray], gt: list[np.ndarray], *, scored: set[int],
                       crop: int, lpips: scores.LpipsScorer | None, folder: Path | None,
                       timing: dict[str, Any], bar: tqdm.tqdm,
                       samples: calibration.Samples | None = None, shown: int | None = None
                       ) -> tuple[list[np.ndarray], dict[str, Any], np.ndarray | None]:
  """(8-bit outputs, the clip's entry of metrics.json, the error-scale map of frame
  `shown` or None) of one method on one clip; the outputs are also written under
  `folder` unless it is None, and scored pixels' maps sampled into `samples`."""
  outputs, per_frame = [], {}
  shown_map = None
  for i, (restored, scale) in enumerate(_timed(method.enhance_with_maps(lq), timing)):
    out = files.to_uint8(restored)
    if out.shape != gt[i].shape:
      raise clips_lib.EvaluateError(clip.gt[i], f'{method.name} output is {out.shape[1]}x'
                                    f'{out.shape[0]}, ground truth {gt[i].shape[1]}x'
                                    f'{gt[i].shape[0]}')
    outputs.append(out)
    if folder is not None:
      frames_lib.write_image(folder / (clip.gt[i].stem + '.png'), out)
    if i in scored:
      per_frame[clip.gt[i].name] = scores.score_frame(out, gt[i], crop, lpips)
      if samples is not None and scale is not None:
        samples.add(out, gt[i], scale, crop, seed=zlib.crc32(f'{clip.name}/{i}'.encode()))
    if i == shown:
      shown_map = scale
    bar.update(1)
  return outputs, scores.clip_scores(outputs, gt, per_frame, scored), shown_map


def _timed(stream: Iterator[Any], entry: dict[str, Any]) -> Iterator[Any]:
  """Adds the time spent producing each frame but the first of a clip (which also
  pays for compilation and filling the window) to entry['seconds']."""
  stream = iter(stream)
  first = True
  while True:
    t0 = time.perf_counter()
    try:
      frame = next(stream)
    except StopIteration:
      return
    if not first:
      entry['seconds'] += time.perf_counter() - t0
      entry['frames_timed'] += 1
    first = False
    yield frame
