"""Scores restorations against ground truth: metrics.json, results.md, pictures.

  python -m clarity_jax.evaluate --bundle=BUNDLE[,BUNDLE2,DEBLUR+SR,...] \\
      [--workdir=RUN[,RUN2]] --lq=LQ_ROOT --gt=GT_ROOT --output=DIR \\
      [--names=a,b,...] [--protocol=basicsr|fmanet] [--max_frames=N] \\
      [--lpips_weights=FILE] [--num_pictures=4] [--tile=0] [--scale=S]

Every frame of every clip of LQ_ROOT/<clip>/ is restored by every method with the
sliding window of enhance (reflected at clip edges) and scored against
GT_ROOT/<clip>/ (frames paired in name order):

  methods   bicubic (always, first), each bundle, each training workdir (latest
            checkpoint); `A+B` runs A then B on A's output (two-stage deblur -> SR);
            a method whose scales multiply to less than the data's (a scale-1
            deblur bundle on x4 data) is followed by bicubic upsampling;
  protocol  basicsr: all frames; fmanet: the first and last frame of each clip
            dropped (FMA-Net). PSNR / SSIM on RGB and on Y (BT.601) in [0, 255] of
            the 8-bit outputs, `scale` pixels of border cropped, averaged per clip,
            then over clips; tOF and flicker per clip over the included frames;
            LPIPS only with --lpips_weights (else "unavailable", never estimated);
  outputs   DIR/metrics.json (per frame, per clip, mean; the protocol), DIR/results.md
            (tables), DIR/pictures/*.png (bicubic | each method | GT, with a zoomed
            crop of the frame's most detailed region), DIR/frames/<method>/<clip>/
            (the scored 8-bit outputs, --save_frames).

Inputs are checked before anything is restored (a clip without ground truth,
frames of a size that does not match the scale, empty folders: one line naming
the clip), and DIR is assembled under a temporary name and moved into place only
when complete.

REDS4 (DESIGN.md, `train_blur_bicubic`, x4): put clips 000, 011, 015, 020 of
`train/train_blur_bicubic/X4` under LQ_ROOT and of `train/train_sharp` under
GT_ROOT, then run once with --protocol=basicsr and once with --protocol=fmanet to
set the numbers beside EDVR / BasicVSR++ (BasicSR: all frames) and FMA-Net (first
and last dropped).
"""

from __future__ import annotations

import dataclasses
import functools
import json
import math
import os
from pathlib import Path
import platform
import re
import shutil
import time
from typing import Any, Iterable, Iterator, Sequence

from absl import app
from absl import flags
from absl import logging
import cv2
from flax import nnx
import jax
import jax.numpy as jnp
import numpy as np
import tqdm

from clarity_jax.inference import bundle as bundle_lib
from clarity_jax.cli import common as cli_errors
from clarity_jax.inference import enhance
from clarity_jax import metrics
from clarity_jax.data import video_io
from clarity_jax.data import frames as frames_lib
from clarity_jax import errors
from clarity_jax.models import lpips as lpips_lib

METRICS_FILE = 'metrics.json'
RESULTS_FILE = 'results.md'
PICTURES_DIR = 'pictures'
FRAMES_DIR = 'frames'
BICUBIC = 'bicubic'
SCALES = (1, 2, 4)

PROTOCOLS = {
    'basicsr': 'every frame of every clip (BasicSR, EDVR, BasicVSR++)',
    'fmanet': 'the first and last frame of each clip dropped (FMA-Net, CVPR 2024)',
}
# Per-frame scores, in table order.
FRAME_METRICS = ('psnr', 'ssim', 'psnr_y', 'ssim_y', 'lpips')
CLIP_METRICS = ('tof', 'flicker')
# Pictures: white gaps between panels, the label strip's height, and the zoom of
# the detail crop.
PAD = 4
LABEL_HEIGHT = 20
ZOOM = 4
_BOX_COLOUR = (255, 48, 48)


class EvaluateError(errors.PathError):
  """Inputs or outputs that cannot be evaluated: '<path>: <what>'."""


# ------------------------------------------------------------------- the data


@dataclasses.dataclass(frozen=True)
class Clip:
  """One LQ clip and its ground truth, frames paired in name order."""
  name: str
  lq: tuple[Path, ...]
  gt: tuple[Path, ...]
  lq_size: tuple[int, int]  # (h, w)
  gt_size: tuple[int, int]  # as stored; scored on its top-left scale * lq_size


def pair_clips(lq_root: str | os.PathLike, gt_root: str | os.PathLike, *,
               scale: int | None = None, max_frames: int | None = None
               ) -> tuple[int, list[Clip]]:
  """(scale, clips): every LQ clip with its ground truth, checked.

  The scale is GT size // LQ size of the first clip unless given. Ground truth may
  exceed scale * LQ by less than `scale` pixels (degrade crops HR frames to a
  multiple of the scale): it is then scored on its top-left scale * LQ pixels.
  `max_frames` keeps the first N frames of every clip (the clip is then those N).
  Raises FrameError / EvaluateError naming the clip folder.
  """
  lq_root, gt_root = Path(lq_root), Path(gt_root)
  lq_clips = frames_lib.list_clips(lq_root)
  gt_clips = frames_lib.list_clips(gt_root)
  if frames_lib.is_one_clip(lq_clips, lq_root) and frames_lib.is_one_clip(gt_clips, gt_root):
    # Two single-clip folders: paired whatever their names.
    gt_clips = {next(iter(lq_clips)): next(iter(gt_clips.values()))}
  extra = sorted(set(gt_clips) - set(lq_clips))
  if extra:
    logging.warning('%s: %d ground-truth clip(s) without LQ are not scored, e.g. %s',
                    gt_root, len(extra), extra[0])
  out = []
  for name, lq in lq_clips.items():
    lq_dir = lq[0].parent
    if name not in gt_clips:
      raise EvaluateError(lq_dir, f'clip {name!r} has no ground truth (no {gt_root / name})')
    gt = gt_clips[name]
    gt_dir = gt[0].parent
    if len(lq) != len(gt):
      raise EvaluateError(lq_dir, f'clip {name!r} has {len(lq)} LQ frames but {len(gt)} '
                          f'ground-truth frames in {gt_dir}')
    lq_size = frames_lib.check_clip_sizes(name, lq)
    gt_size = frames_lib.check_clip_sizes(name, gt)
    (h, w), (gh, gw) = lq_size, gt_size
    if scale is None:
      scale = gh // h
      if scale not in SCALES or gw // w != scale:
        raise EvaluateError(gt_dir, f'ground-truth frames of {gw}x{gh} are not 1, 2 or 4 '
                            f'times the {w}x{h} LQ frames of clip {name!r}')
    if (gh // scale, gw // scale) != (h, w):
      raise EvaluateError(gt_dir, f'ground-truth frames of {gw}x{gh} do not match the '
                          f'{w}x{h} LQ frames of clip {name!r} at x{scale} (expected '
                          f'{scale * w}x{scale * h})')
    if max_frames:
      lq, gt = lq[:max_frames], gt[:max_frames]
    out.append(Clip(name, tuple(lq), tuple(gt), lq_size, gt_size))
  return scale, out


def included_frames(num_frames: int, protocol: str) -> range:
  """Indices of the frames a protocol scores."""
  if protocol == 'basicsr':
    return range(num_frames)
  if protocol == 'fmanet':
    return range(1, num_frames - 1)
  raise ValueError(f'unknown protocol {protocol!r}; one of {sorted(PROTOCOLS)}')


def check_protocol(clips: Sequence[Clip], protocol: str) -> None:
  for clip in clips:
    if not len(included_frames(len(clip.lq), protocol)):
      raise EvaluateError(clip.lq[0].parent, f'clip {clip.name!r} has {len(clip.lq)} '
                          f'frame(s); the {protocol} protocol leaves none to score')


# --------------------------------------------------------------- the methods


@dataclasses.dataclass
class Method:
  """A named way from LQ frames to frames at the data's scale.

  `stages` run in sequence, each with its own sliding window over the previous
  stage's output frames (a two-stage cascade restores whole clips stage by stage,
  as two separate programs would); `upscale` is the bicubic factor applied last
  (the data's scale for the bicubic baseline, 4 after a scale-1 deblur network
  on x4 data, else 1).
  """
  name: str
  stages: list[enhance.Restorer]
  upscale: int
  info: dict[str, Any]

  def restore(self, lq: Iterable[np.ndarray]) -> Iterator[np.ndarray]:
    """Float32 frames in [0, 1], one per input frame, streaming."""
    stream = iter(lq)
    for restorer in self.stages:
      stream = (out for _, out in enhance.restore_frames(restorer, stream))
    for frame in stream:
      yield enhance.bicubic_upscale(frame, self.upscale) if self.upscale > 1 else frame


def bicubic_method(scale: int) -> Method:
  return Method(BICUBIC, [], scale, {'kind': 'bicubic', 'interpolation':
                                     'OpenCV INTER_CUBIC (a = -0.75), clipped to [0, 1]'})


def _load_stage(path: str, kind: str, restorer_kw: dict[str, Any]
                ) -> tuple[enhance.Restorer, dict[str, Any]]:
  if kind == 'bundle':
    restorer, info = enhance.Restorer.from_bundle(path, restorer_kw.pop('dtype'),
                                                  **restorer_kw)
    spec = info.model
    return restorer, {'bundle': path, 'variant': spec.variant, 'scale': spec.scale,
                      'num_neighbors': spec.num_neighbors,
                      'use_alignment': spec.use_alignment,
                      'use_attention': spec.use_attention, 'step': info.step,
                      'weights': info.weights, 'params_sha256': info.params_sha256}
  # A training workdir: its latest checkpoint, read as export reads it.
  from clarity_jax.train import checkpoints  # pylint: disable=g-import-not-at-top  (orbax: only here)
  from clarity_jax.train import state as ts  # pylint: disable=g-import-not-at-top
  params, config, step, weights = checkpoints.restore_params(path)
  restorer_kw.pop('dtype')  # computation dtype of a checkpoint: its config's
  restorer = enhance.Restorer(ts.model_graphdef(config), params, scale=config.scale,
                              num_neighbors=config.num_neighbors, **restorer_kw)
  return restorer, {'workdir': path, 'variant': config.model.variant,
                    'scale': config.scale, 'num_neighbors': config.num_neighbors,
                    'use_alignment': config.model.use_alignment,
                    'use_attention': config.model.use_attention, 'step': step,
                    'weights': weights}


def load_method(spec: str, scale: int, *, kind: str = 'bundle', name: str | None = None,
                dtype: str = 'float32', tile: int = 0, tile_overlap: int = 16,
                batch: int = 1) -> Method:
  """A method from `PATH` or `PATH1+PATH2` (bundles, or workdirs with kind='workdir')."""
  paths = [p for p in spec.split('+')]
  if not all(paths):
    raise EvaluateError(spec, 'empty stage in a +-separated method')
  stages, infos = [], []
  for path in paths:
    restorer, info = _load_stage(path, kind, dict(dtype=dtype, tile=tile,
                                                  tile_overlap=tile_overlap, batch=batch))
    stages.append(restorer)
    infos.append(info)
  total = math.prod(r.scale for r in stages)
  if scale % total:
    raise EvaluateError(paths[-1], f'the method {spec!r} upscales x{total}, which does not '
                        f'fit x{scale} data')
  upscale = scale // total
  if name is None:
    name = ' -> '.join(Path(p).name for p in paths)
    if upscale > 1:
      name += ' + bicubic'
  return Method(name, stages, upscale, {
      'kind': 'two-stage' if len(stages) > 1 else kind, 'stages': infos,
      'bicubic_after': upscale})


# ---------------------------------------------------------------- scoring


@functools.partial(jax.jit, static_argnames='crop')
def _frame_scores(pred: jax.Array, gt: jax.Array, crop: int) -> dict[str, jax.Array]:
  """PSNR / SSIM on RGB and Y of one pair of 8-bit frames [H, W, 3]."""
  pred, gt = pred.astype(jnp.float32), gt.astype(jnp.float32)
  return {'psnr': metrics.psnr(pred, gt, crop_border=crop),
          'ssim': metrics.ssim(pred, gt, crop_border=crop),
          'psnr_y': metrics.psnr(pred, gt, crop_border=crop, y_channel=True),
          'ssim_y': metrics.ssim(pred, gt, crop_border=crop, y_channel=True)}


class LpipsScorer:
  """LPIPS of 8-bit frames with the same border crop, one jitted program per size."""

  def __init__(self, model: lpips_lib.LPIPS):
    graphdef, state = nnx.split(model)
    self.net = model.net
    self._state = state
    self._fn = jax.jit(lambda s, a, b: nnx.merge(graphdef, s)(a, b))

  def __call__(self, pred: np.ndarray, gt: np.ndarray, crop: int) -> float:
    if crop:
      pred, gt = pred[crop:-crop, crop:-crop], gt[crop:-crop, crop:-crop]
    to01 = lambda x: jnp.asarray(x, jnp.float32) / 255.0
    return float(self._fn(self._state, to01(pred), to01(gt)))


def score_frame(pred: np.ndarray, gt: np.ndarray, crop: int,
                lpips: LpipsScorer | None = None) -> dict[str, float | None]:
  """Every per-frame metric of two uint8 [H, W, 3] frames (lpips None: unavailable)."""
  scores = {k: float(v) for k, v in _frame_scores(pred, gt, crop).items()}
  scores['lpips'] = lpips(pred, gt, crop) if lpips is not None else None
  return scores


def _mean(values: Iterable[float | None]) -> float | None:
  values = [v for v in values if v is not None]
  return float(np.mean(values)) if values else None


# --------------------------------------------------------------- pictures


def detail_box(gt: np.ndarray, size: tuple[int, int], border: int = 0) -> tuple[int, int]:
  """(y, x) of the size = (h, w) window of largest gradient energy in an 8-bit frame.

  Energy: the sum of squared Sobel gradients of the luma, so the crop lands on
  texture and edges (where restorations differ), not on flat sky. Window sums come
  from an integral image; the `border` pixels (cropped by the metrics) are avoided
  when the frame is large enough.
  """
  gray = cv2.cvtColor(gt, cv2.COLOR_RGB2GRAY).astype(np.float32)
  gx = cv2.Sobel(gray, cv2.CV_32F, 1, 0, ksize=3)
  gy = cv2.Sobel(gray, cv2.CV_32F, 0, 1, ksize=3)
  total = cv2.integral(gx * gx + gy * gy, sdepth=cv2.CV_64F)  # [H + 1, W + 1]
  h, w = size
  sums = total[h:, w:] - total[:-h, w:] - total[h:, :-w] + total[:-h, :-w]
  H, W = gray.shape
  lo_y, lo_x = (border if H - 2 * border >= h else 0), (border if W - 2 * border >= w else 0)
  region = sums[lo_y:H - h + 1 - lo_y, lo_x:W - w + 1 - lo_x]
  y, x = np.unravel_index(int(np.argmax(region)), region.shape)
  return int(y) + lo_y, int(x) + lo_x


def zoom_size(h: int, w: int) -> tuple[int, int]:
  """The crop shown zoomed: 1/ZOOM of the frame each way (at least 8 pixels)."""
  return max(min(8, h), h // ZOOM), max(min(8, w), w // ZOOM)


def picture_size(h: int, w: int, columns: int) -> tuple[int, int]:
  """(height, width) of a comparison picture of `columns` panels of h x w frames."""
  return LABEL_HEIGHT + 2 * h + PAD, columns * w + (columns - 1) * PAD


def _label(text: str, width: int) -> np.ndarray:
  strip = np.full((LABEL_HEIGHT, width, 3), 255, np.uint8)
  font, thickness = cv2.FONT_HERSHEY_SIMPLEX, 1
  scale = 0.45
  while scale > 0.2 and cv2.getTextSize(text, font, scale, thickness)[0][0] > width - 4:
    scale -= 0.05
  (tw, th), _ = cv2.getTextSize(text, font, scale, thickness)
  origin = (max((width - tw) // 2, 2), (LABEL_HEIGHT + th) // 2)
  cv2.putText(strip, text, origin, font, scale, (0, 0, 0), thickness, cv2.LINE_AA)
  return strip


def comparison_picture(panels: Sequence[tuple[str, np.ndarray]],
                       box: tuple[int, int, int, int]) -> np.ndarray:
  """Labelled columns (label / full frame with the box drawn / box zoomed ZOOM x).

  panels: (label, uint8 [h, w, 3]) in order, e.g. bicubic, methods..., GT; box:
  (y, x, bh, bw). Returns uint8 [picture_size(h, w, len(panels)), 3].
  """
  h, w = panels[0][1].shape[:2]
  y, x, bh, bw = box
  thickness = max(1, min(h, w) // 160)
  columns = []
  for label, frame in panels:
    full = np.ascontiguousarray(frame.copy())
    cv2.rectangle(full, (x, y), (x + bw - 1, y + bh - 1), _BOX_COLOUR, thickness)
    # Nearest neighbour: the zoom shows the pixels themselves, not a smoothed guess.
    zoomed = cv2.resize(frame[y:y + bh, x:x + bw], (min(ZOOM * bw, w), min(ZOOM * bh, h)),
                        interpolation=cv2.INTER_NEAREST)
    lower = np.full((h, w, 3), 255, np.uint8)
    zy, zx = (h - zoomed.shape[0]) // 2, (w - zoomed.shape[1]) // 2
    lower[zy:zy + zoomed.shape[0], zx:zx + zoomed.shape[1]] = zoomed
    gap = np.full((PAD, w, 3), 255, np.uint8)
    columns.append(np.concatenate([_label(label, w), full, gap, lower], axis=0))
  sep = np.full((columns[0].shape[0], PAD, 3), 255, np.uint8)
  parts = [columns[0]]
  for column in columns[1:]:
    parts += [sep, column]
  return np.concatenate(parts, axis=1)


def picture_frames(clips: Sequence[Clip], protocol: str, num_pictures: int
                   ) -> dict[str, int]:
  """{clip: frame index} for the pictures: the middle scored frame of clips spread
  evenly over the list."""
  if num_pictures <= 0 or not clips:
    return {}
  picks = np.unique(np.round(np.linspace(0, len(clips) - 1, min(num_pictures, len(clips)))))
  out = {}
  for i in picks.astype(int):
    scored = included_frames(len(clips[i].lq), protocol)
    out[clips[i].name] = scored[len(scored) // 2]
  return out


# ------------------------------------------------------------- the evaluation


def _slug(name: str) -> str:
  """A method's folder name: 'deblur -> sr + bicubic' -> 'deblur_to_sr_bicubic'."""
  name = name.replace('->', ' to ')
  return re.sub(r'[^A-Za-z0-9._-]+', '_', name).strip('_') or 'method'


def _timed(stream: Iterator[np.ndarray], entry: dict[str, Any]) -> Iterator[np.ndarray]:
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


def protocol_record(protocol: str, scale: int, clips: Sequence[Clip],
                    max_frames: int | None, lpips: LpipsScorer | None,
                    lpips_path: str, tile: int) -> dict[str, Any]:
  included, dropped = {}, {}
  for clip in clips:
    keep = set(included_frames(len(clip.gt), protocol))
    included[clip.name] = [p.name for i, p in enumerate(clip.gt) if i in keep]
    dropped[clip.name] = [p.name for i, p in enumerate(clip.gt) if i not in keep]
  return {
      'name': protocol,
      'frames': PROTOCOLS[protocol],
      'channels': ['RGB', 'Y (BT.601, MATLAB rgb2ycbcr, [16, 235])'],
      'range': '[0, 255]: outputs quantised to 8 bits (clip, round) before scoring',
      'crop_border': scale,
      'scale': scale,
      'psnr': '10 log10(255^2 / MSE) per frame',
      'ssim': ('Wang et al. 2004: 11x11 Gaussian window, sigma 1.5, K1 0.01, K2 0.03, '
               'averaged over channels (= skimage structural_similarity with '
               'gaussian_weights=True, use_sample_covariance=False)'),
      'lpips': (f'LPIPS v0.1 {lpips.net} from {lpips_path}, RGB, same border crop'
                if lpips is not None else
                'unavailable (no --lpips_weights file given; never estimated)'),
      'tof': ('TecoGAN / FMA-Net tOF: mean length of the difference between OpenCV '
              'Farneback flows of consecutive output and GT frames, pixels, over '
              'consecutive scored frames of each clip'),
      'flicker': ('mean |(out[t+1] - out[t]) - (gt[t+1] - gt[t])| over consecutive '
                  'scored frames, [0, 255]'),
      'averaging': 'per frame -> mean per clip -> mean over clips',
      'temporal_window': 'sliding window of 2K+1 frames, reflected at clip edges',
      'tile': tile or 'whole frames',
      'max_frames': max_frames,
      'num_clips': len(clips),
      'num_frames_included': sum(len(v) for v in included.values()),
      'num_frames_dropped': sum(len(v) for v in dropped.values()),
      'frames_included': included,
      'frames_dropped': dropped,
  }


def evaluate(methods: Sequence[Method], clips: Sequence[Clip], output: str | os.PathLike,
             *, scale: int, protocol: str = 'basicsr', lpips: LpipsScorer | None = None,
             lpips_path: str = '', num_pictures: int = 4, save_frames: bool = True,
             max_frames: int | None = None, tile: int = 0, sources: dict[str, str] | None = None,
             progress: bool = True) -> dict[str, Any]:
  """Restores, scores and writes everything under `output`; returns metrics.json's dict.

  `output` must be new, empty or an earlier evaluation (then replaced once the new
  one is complete); it is assembled in a hidden sibling folder meanwhile.
  """
  check_protocol(clips, protocol)
  names = [m.name for m in methods]
  if len(set(names)) != len(names) or len({_slug(n) for n in names}) != len(names):
    raise EvaluateError(output, f'method names must be distinct (as folder names too): '
                        f'{names}')
  output = Path(output)
  if output.exists() and (not output.is_dir() or (
      any(output.iterdir()) and not (output / METRICS_FILE).is_file())):
    raise EvaluateError(output, 'exists and is not an earlier evaluation (no '
                        f'{METRICS_FILE}); choose a new or empty folder')
  output.parent.mkdir(parents=True, exist_ok=True)
  tmp = output.with_name(f'.{output.name}.tmp-{os.getpid()}')
  shutil.rmtree(tmp, ignore_errors=True)
  (tmp / PICTURES_DIR).mkdir(parents=True)
  try:
    report = _evaluate_into(tmp, methods, clips, scale=scale, protocol=protocol,
                            lpips=lpips, lpips_path=lpips_path, num_pictures=num_pictures,
                            save_frames=save_frames, max_frames=max_frames, tile=tile,
                            sources=sources or {}, progress=progress)
    frames_lib.replace_folder(tmp, output)
  except BaseException:
    shutil.rmtree(tmp, ignore_errors=True)
    raise
  return report


def _evaluate_into(tmp: Path, methods: Sequence[Method], clips: Sequence[Clip], *,
                   scale: int, protocol: str, lpips: LpipsScorer | None, lpips_path: str,
                   num_pictures: int, save_frames: bool, max_frames: int | None,
                   tile: int, sources: dict[str, str], progress: bool) -> dict[str, Any]:
  start = time.perf_counter()
  crop = scale
  shows = picture_frames(clips, protocol, num_pictures)
  results = {m.name: {'clips': {}, 'seconds': 0.0, 'frames_timed': 0} for m in methods}
  pictures = []
  total = sum(len(c.lq) for c in clips) * len(methods)
  with tqdm.tqdm(total=total, unit='frame', desc='evaluate', disable=not progress,
                 dynamic_ncols=True) as bar:
    for clip in clips:
      h, w = clip.lq_size
      gt = [video_io.to_uint8(frames_lib.read_image(p))[:scale * h, :scale * w]
            for p in clip.gt]
      lq = [frames_lib.read_image(p) for p in clip.lq]
      for path, frame in zip(clip.lq, lq):
        if frame.shape[:2] != (h, w):  # the header said otherwise: a damaged file
          raise frames_lib.FrameError(path, f'decoded size {frame.shape[1]}x'
                                      f'{frame.shape[0]} differs from the header {w}x{h}')
      scored = set(included_frames(len(lq), protocol))
      panels = []
      for method in methods:
        bar.set_postfix_str(f'{clip.name}: {method.name}')
        folder = tmp / FRAMES_DIR / _slug(method.name) / clip.name
        if save_frames:
          folder.mkdir(parents=True, exist_ok=True)
        outputs, per_frame = [], {}
        for i, restored in enumerate(_timed(method.restore(lq), results[method.name])):
          out = video_io.to_uint8(restored)
          if out.shape != gt[i].shape:
            raise EvaluateError(clip.gt[i], f'{method.name} output is {out.shape[1]}x'
                                f'{out.shape[0]}, ground truth {gt[i].shape[1]}x'
                                f'{gt[i].shape[0]}')
          outputs.append(out)
          if save_frames:
            frames_lib.write_image(folder / (clip.gt[i].stem + '.png'), out)
          if i in scored:
            per_frame[clip.gt[i].name] = score_frame(out, gt[i], crop, lpips)
          bar.update(1)
        keep = sorted(scored)
        temporal = len(keep) >= 2
        kept_out = np.stack([outputs[i] for i in keep])
        kept_gt = np.stack([gt[i] for i in keep])
        results[method.name]['clips'][clip.name] = {
            'mean': {k: _mean(f[k] for f in per_frame.values()) for k in FRAME_METRICS},
            'tof': metrics.tof(kept_out, kept_gt) if temporal else None,
            'flicker': metrics.flicker(kept_out, kept_gt) if temporal else None,
            'frames': per_frame,
        }
        if clip.name in shows:
          i = shows[clip.name]
          panels.append((method.name, f'{method.name} '
                         f'{per_frame[clip.gt[i].name]["psnr"]:.2f} dB', outputs[i]))
      if clip.name in shows:
        i = shows[clip.name]
        bh, bw = zoom_size(scale * h, scale * w)
        y, x = detail_box(gt[i], (bh, bw), border=crop)
        picture = comparison_picture([p[1:] for p in panels] + [('GT', gt[i])],
                                     (y, x, bh, bw))
        name = f'{_slug(clip.name)}_{Path(clip.gt[i]).stem}.png'
        frames_lib.write_image(tmp / PICTURES_DIR / name, picture)
        pictures.append({'file': f'{PICTURES_DIR}/{name}', 'clip': clip.name,
                         'frame': clip.gt[i].name, 'zoom_box': [y, x, bh, bw],
                         'columns': [p[0] for p in panels] + ['GT']})

  for name, entry in results.items():
    clip_entries = entry['clips'].values()
    entry['mean'] = {k: _mean(c['mean'][k] for c in clip_entries) for k in FRAME_METRICS}
    for k in CLIP_METRICS:
      entry['mean'][k] = _mean(c[k] for c in clip_entries)
    entry['ms_per_frame'] = (1000.0 * entry['seconds'] / entry['frames_timed']
                             if entry['frames_timed'] else None)
  report = {
      'program': 'clarity_jax.evaluate',
      'version': bundle_lib.package_version(),
      'date': time.strftime('%Y-%m-%d %H:%M:%S %Z'),
      'machine': machine_description(),
      'sources': sources,
      'protocol': protocol_record(protocol, scale, clips, max_frames, lpips, lpips_path, tile),
      'methods': {m.name: m.info for m in methods},
      'results': results,
      'pictures': pictures,
      'seconds': time.perf_counter() - start,
  }
  _write_text(tmp / METRICS_FILE, json.dumps(_json_safe(report), indent=1,
                                             allow_nan=False) + '\n')
  _write_text(tmp / RESULTS_FILE, results_markdown(report))
  return report


def machine_description() -> str:
  devices = jax.devices()
  return (f'{platform.processor() or platform.machine()}, {os.cpu_count()} CPU cores '
          f'visible, JAX {jax.__version__} on {len(devices)} {devices[0].platform} '
          f'device(s) ({devices[0].device_kind})')


def _json_safe(value: Any) -> Any:
  """JSON has no inf / nan: PSNR of identical frames is written as the string 'inf'."""
  if isinstance(value, float) and not math.isfinite(value):
    return str(value)
  if isinstance(value, dict):
    return {k: _json_safe(v) for k, v in value.items()}
  if isinstance(value, (list, tuple)):
    return [_json_safe(v) for v in value]
  return value


def _write_text(path: Path, text: str) -> None:
  tmp = path.with_name(f'.{path.name}.{os.getpid()}.tmp')
  tmp.write_text(text)
  os.replace(tmp, path)




# ------------------------------------------------------------------ tables


def _fmt(value: float | None, digits: int) -> str:
  if value is None:
    return 'n/a'
  if isinstance(value, str) or not math.isfinite(value):
    return str(value)
  return f'{value:.{digits}f}'


def summary_table(report: dict[str, Any]) -> str:
  """Mean over clips of every metric, one row per method (Markdown)."""
  lpips_on = any(r['mean']['lpips'] is not None for r in report['results'].values())
  rows = ['| method | PSNR (dB) | SSIM | PSNR-Y (dB) | SSIM-Y | LPIPS | tOF | flicker '
          '| ms / frame |', '| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |']
  for name, result in report['results'].items():
    m = result['mean']
    rows.append(f'| {name} | {_fmt(m["psnr"], 2)} | {_fmt(m["ssim"], 4)} | '
                f'{_fmt(m["psnr_y"], 2)} | {_fmt(m["ssim_y"], 4)} | '
                f'{_fmt(m["lpips"], 4) if lpips_on else "unavailable"} | '
                f'{_fmt(m["tof"], 3)} | {_fmt(m["flicker"], 2)} | '
                f'{_fmt(result["ms_per_frame"], 0)} |')
  return '\n'.join(rows) + '\n'


def clip_table(report: dict[str, Any], metric: str = 'psnr', digits: int = 2) -> str:
  """One metric per clip (columns) and method (rows), Markdown."""
  results = report['results']
  clips = list(next(iter(results.values()))['clips'])
  rows = ['| method | ' + ' | '.join(clips) + ' |',
          '| --- |' + ' ---: |' * len(clips)]
  for name, result in results.items():
    rows.append(f'| {name} | ' + ' | '.join(
        _fmt(result['clips'][c]['mean'][metric] if metric in FRAME_METRICS
             else result['clips'][c][metric], digits) for c in clips) + ' |')
  return '\n'.join(rows) + '\n'


def protocol_markdown(report: dict[str, Any]) -> str:
  p = report['protocol']
  return '\n'.join([
      f'- Frames: {p["frames"]} (`--protocol={p["name"]}`): {p["num_frames_included"]} '
      f'frames of {p["num_clips"]} clips scored, {p["num_frames_dropped"]} dropped'
      + (f'; clips cut to their first {p["max_frames"]} frames' if p['max_frames'] else '')
      + '.',
      f'- PSNR / SSIM on RGB and on Y in [0, 255] of the 8-bit outputs, x{p["scale"]}, '
      f'{p["crop_border"]} pixels of border cropped; averaged {p["averaging"]}.',
      f'- SSIM: {p["ssim"]}.',
      f'- LPIPS: {p["lpips"]}.',
      f'- tOF: {p["tof"]} (lower is better). Flicker: {p["flicker"]} (lower is better).',
      f'- Restoration: {p["temporal_window"]}; {p["tile"]}'
      + (' LQ pixels per tile' if p['tile'] != 'whole frames' else '') + '.',
      '- ms / frame: restoration alone (not scoring or writing), the first frame of each '
      'clip left out (it pays for compilation), on the machine above.',
  ]) + '\n'


def results_markdown(report: dict[str, Any], pictures_prefix: str = '') -> str:
  """The results page of one evaluation: protocol, tables, pictures."""
  parts = ['# Evaluation results\n',
           f'{report["date"]}, {report["machine"]}.\n']
  if report.get('sources'):
    parts.append('Inputs: ' + ', '.join(f'{k} `{v}`' for k, v in report['sources'].items())
                 + '.\n')
  parts += ['## Protocol\n', protocol_markdown(report),
            '## Mean over clips\n', summary_table(report),
            '## PSNR (dB) per clip\n', clip_table(report, 'psnr', 2),
            '## SSIM per clip\n', clip_table(report, 'ssim', 4),
            '## Methods\n']
  for name, info in report['methods'].items():
    parts.append(f'- **{name}**: {_describe(info)}')
  parts.append('')
  if report['pictures']:
    parts.append('## Pictures\n')
    parts.append('Columns: ' + ' | '.join(report['pictures'][0]['columns']) + '; below each '
                 f'frame, its most detailed region (red box) zoomed {ZOOM}x.\n')
    for pic in report['pictures']:
      parts.append(f'![{pic["clip"]} {pic["frame"]}]({pictures_prefix}{pic["file"]})\n')
  return '\n'.join(parts)


def _describe(info: dict[str, Any]) -> str:
  if info['kind'] == 'bicubic':
    return f'bicubic upsampling of the LQ frame ({info["interpolation"]})'
  stages = []
  for s in info['stages']:
    where = s.get('bundle') or s.get('workdir')
    flags_ = ([] if s['use_alignment'] else ['no alignment']) + (
        [] if s['use_attention'] else ['no attention'])
    stages.append(f'`{where}` ({s["variant"]} x{s["scale"]}, K={s["num_neighbors"]}'
                  + ''.join(f', {f}' for f in flags_) + f', step {s["step"]})')
  text = ' then '.join(stages)
  if info['bicubic_after'] > 1:
    text += f', then bicubic x{info["bicubic_after"]}'
  return text


# ---------------------------------------------------------------------- CLI


def define_flags() -> None:
  """The CLI's flags, defined only when run as a program (see enhance.define_flags)."""
  flags.DEFINE_list('bundle', [], 'Bundles to score, comma separated; A+B chains two '
                    '(two-stage deblur -> SR).')
  flags.DEFINE_list('workdir', [], 'Training workdirs to score (latest checkpoint); A+B '
                    'chains two.')
  flags.DEFINE_list('names', [], 'Table labels of the --bundle then --workdir methods, in '
                    'order (default: folder names).')
  flags.DEFINE_string('lq', None, 'LQ_ROOT/<clip>/<frames> (or one clip folder).')
  flags.DEFINE_string('gt', None, 'GT_ROOT/<clip>/<frames>, the same clips and frame count.')
  flags.DEFINE_string('output', None, 'Folder for metrics.json, results.md, pictures/, '
                      'frames/.')
  flags.DEFINE_enum('protocol', 'basicsr', sorted(PROTOCOLS), 'basicsr: all frames; fmanet: '
                    'first and last frame of each clip dropped.')
  flags.DEFINE_integer('scale', None, 'Scale of the data; default: GT size // LQ size.')
  flags.DEFINE_integer('max_frames', None, 'Keep only the first N frames of each clip '
                       '(quick runs).', lower_bound=1)
  flags.DEFINE_string('lpips_weights', '', 'LPIPS weights (.safetensors / .npz, see '
                      'clarity_jax.models.lpips.load_lpips); empty: LPIPS unavailable.')
  flags.DEFINE_integer('num_pictures', 4, 'Comparison pictures (one frame of as many clips).',
                       lower_bound=0)
  flags.DEFINE_bool('save_frames', True, 'Also write every scored output frame under '
                    'OUTPUT/frames/<method>/<clip>/.')
  flags.DEFINE_integer('tile', 0, 'Tile size in LQ pixels; 0: whole frames (as BasicSR '
                       'scores); e.g. 256 for frames too large for memory.', lower_bound=0)
  flags.DEFINE_integer('tile_overlap', 16, 'Overlap of neighbouring tiles.', lower_bound=0)
  flags.DEFINE_integer('batch', 1, 'Windows restored at once.', lower_bound=1)
  flags.DEFINE_enum('dtype', 'float32', ['float32', 'bfloat16'], 'Computation dtype of '
                    'bundles.')
  flags.DEFINE_bool('progress', True, 'Show a progress bar.')
  flags.mark_flags_as_required(['lq', 'gt', 'output'])


def run(f: Any) -> dict[str, Any]:
  """The command with flag values `f`: checks inputs, loads methods, evaluates."""
  specs = [(s, 'bundle') for s in f.bundle] + [(s, 'workdir') for s in f.workdir]
  if f.names and len(f.names) != len(specs):
    raise EvaluateError('--names', f'{len(f.names)} names for {len(specs)} methods '
                        '(--bundle then --workdir)')
  if f.scale is not None and f.scale not in SCALES:
    raise EvaluateError('--scale', f'must be 1, 2 or 4, got {f.scale}')
  scale, clips = pair_clips(f.lq, f.gt, scale=f.scale, max_frames=f.max_frames)
  check_protocol(clips, f.protocol)
  lpips_model = lpips_lib.maybe_load_lpips(f.lpips_weights)
  lpips = LpipsScorer(lpips_model) if lpips_model is not None else None
  methods = [bicubic_method(scale)]
  for i, (spec, kind) in enumerate(specs):
    methods.append(load_method(spec, scale, kind=kind, name=f.names[i] if f.names else None,
                               dtype=f.dtype, tile=f.tile, tile_overlap=f.tile_overlap,
                               batch=f.batch))
  return evaluate(methods, clips, f.output, scale=scale, protocol=f.protocol, lpips=lpips,
                  lpips_path=f.lpips_weights, num_pictures=f.num_pictures,
                  save_frames=f.save_frames, max_frames=f.max_frames, tile=f.tile,
                  sources={'lq': f.lq, 'gt': f.gt}, progress=f.progress)


@cli_errors.exit_on_error()
def main(argv: list[str]) -> None:
  cli_errors.start(argv, quiet=True)
  f = flags.FLAGS
  report = run(f)
  print(summary_table(report), end='')
  print(f'{f.output}: {report["protocol"]["num_frames_included"]} frames of '
        f'{report["protocol"]["num_clips"]} clips, protocol {f.protocol}', flush=True)


if __name__ == '__main__':
  define_flags()
  app.run(main)
