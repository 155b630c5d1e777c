"""The methods compared: the bicubic baseline, bundles, training workdirs, cascades.

A method takes LQ frames to frames at the data's scale. `A+B` runs A then B on A's
output (two-stage deblur -> SR), each stage with its own sliding window over the
whole clip, as two separate programs would; a method whose scales multiply to less
than the data's (a scale-1 deblur bundle on x4 data) is followed by bicubic
upsampling.
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path
from typing import Any, Iterable, Iterator, Sequence

import numpy as np

from clarity_jax.evaluation import clips as clips_lib
from clarity_jax.inference import bundle as bundle_lib
from clarity_jax.inference import restorer as restorer_lib
from clarity_jax.models import bicubic
from clarity_jax.train import checkpoints
from clarity_jax.train import state as state_lib

BICUBIC = 'bicubic'
# The baseline's recorded definition (metrics.json, results.md).
BICUBIC_INTERPOLATION = ("Keys cubic a = -0.5 (models/bicubic.py, the model's own skip), "
                         'clipped to [0, 1]')


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
  stages: list[restorer_lib.Restorer]
  upscale: int
  info: dict[str, Any]

  @property
  def maps(self) -> bool:
    """Whether enhance_with_maps gives error-scale maps: one network with the
    uncertainty head, at the data's scale (a cascade's or an upscaled map would
    not describe the final frame's error)."""
    return len(self.stages) == 1 and self.upscale == 1 and self.stages[0].uncertainty

  def enhance_with_maps(self, lq: Iterable[np.ndarray]
                        ) -> Iterator[tuple[np.ndarray, np.ndarray | None]]:
    """(frame, the head's error scale b or None) per input frame, streaming."""
    if not self.maps:
      yield from ((frame, None) for frame in self.enhance(lq))
      return
    for _, frame, scale in restorer_lib.enhance_frames_and_maps(self.stages[0], lq):
      yield frame, scale

  def enhance(self, lq: Iterable[np.ndarray]) -> Iterator[np.ndarray]:
    """Float32 frames in [0, 1], one per input frame, streaming."""
    stream = iter(lq)
    for restorer in self.stages:
      stream = (out for _, out in restorer_lib.enhance_frames(restorer, stream))
    for frame in stream:
      yield bicubic.upsample_frame(frame, self.upscale) if self.upscale > 1 else frame


def bicubic_method(scale: int) -> Method:
  """The baseline: the LQ frame upsampled by the model's own bicubic skip."""
  return Method(BICUBIC, [], scale, {'kind': 'bicubic',
                                     'interpolation': BICUBIC_INTERPOLATION})


def _bundle_stage(path: str, dtype: str, engine: str, **restorer_kw: Any
                  ) -> tuple[restorer_lib.Restorer, dict[str, Any]]:
  # With the head, its maps too: evaluate reports their calibration (calibration.py).
  restorer, info = restorer_lib.Restorer.from_bundle(
      path, dtype, uncertainty=bundle_lib.read_info(path).model.uncertainty, engine=engine,
      **restorer_kw)
  spec = info.model
  return restorer, {'bundle': path, 'variant': spec.variant, 'scale': spec.scale,
                    'num_neighbors': spec.num_neighbors,
                    'use_alignment': spec.use_alignment,
                    'use_attention': spec.use_attention, 'uncertainty': spec.uncertainty,
                    'step': info.step, 'weights': info.weights,
                    'params_sha256': info.params_sha256, 'engine': engine, 'dtype': dtype}


def _workdir_stage(path: str, **restorer_kw: Any
                   ) -> tuple[restorer_lib.Restorer, dict[str, Any]]:
  """A training workdir's checkpoint (`DIR` the latest, `DIR@STEP` that step), read
  as export reads it; it computes in its config's dtype."""
  path, at, step_text = path.rpartition('@') if '@' in path else (path, '', '')
  if at and not step_text.isdigit():
    raise clips_lib.EvaluateError(f'{path}@{step_text}', 'expected WORKDIR@STEP with an '
                                  'integer step')
  params, config, step, weights = checkpoints.restore_params(
      path, int(step_text) if at else None)
  restorer = restorer_lib.Restorer(state_lib.model_graphdef(config), params,
                                   scale=config.scale, num_neighbors=config.num_neighbors,
                                   uncertainty=config.model.get('uncertainty', False),
                                   **restorer_kw)
  return restorer, {'workdir': path, 'variant': config.model.variant,
                    'scale': config.scale, 'num_neighbors': config.num_neighbors,
                    'use_alignment': config.model.use_alignment,
                    'use_attention': config.model.use_attention,
                    'uncertainty': config.model.get('uncertainty', False), 'step': step,
                    'weights': weights}


def load_method(spec: str, scale: int, *, kind: str = 'bundle', name: str | None = None,
                dtype: str = 'float32', tile: int = 0, tile_overlap: int = 16,
                batch: int = 1, engine: str = 'jax') -> Method:
  """A method from `PATH` or `PATH1+PATH2` (bundles, or workdirs with kind='workdir').

  `dtype` is the computation dtype of bundles; a workdir computes in its config's.
  `engine` runs bundles (engines.py); workdirs run in JAX.
  """
  paths = spec.split('+')
  if not all(paths):
    raise clips_lib.EvaluateError(spec, 'empty stage in a +-separated method')
  restorer_kw = dict(tile=tile, tile_overlap=tile_overlap, batch=batch)
  stages, infos = [], []
  for path in paths:
    if kind == 'bundle':
      restorer, info = _bundle_stage(path, dtype, engine, **restorer_kw)
    elif engine != 'jax':
      raise clips_lib.EvaluateError(path, f'--engine={engine} runs bundles (their ONNX '
                                    'graph); export the run first, or use --engine=jax')
    else:
      restorer, info = _workdir_stage(path, **restorer_kw)
    stages.append(restorer)
    infos.append(info)
  total = math.prod(r.scale for r in stages)
  if scale % total:
    raise clips_lib.EvaluateError(paths[-1], f'the method {spec!r} upscales x{total}, '
                                  f'which does not fit x{scale} data')
  upscale = scale // total
  if len(stages) > 1 or upscale > 1:  # no maps of the final frame: skip the head
    for restorer in stages:
      restorer.uncertainty = False
  if name is None:
    name = ' -> '.join(Path(p).name for p in paths)
    if upscale > 1:
      name += ' + bicubic'
  return Method(name, stages, upscale, {
      'kind': 'two-stage' if len(stages) > 1 else kind, 'stages': infos,
      'bicubic_after': upscale})


def method_specs(bundles: Sequence[str] = (), workdirs: Sequence[str] = (),
                 names: Sequence[str] = ()) -> list[tuple[str, str, str | None]]:
  """(spec, 'bundle' | 'workdir', name or None) of each method, bundles first: the
  --bundle, --workdir and --names of evaluate and validate, checked before any
  work starts."""
  specs = [(s, 'bundle') for s in bundles] + [(s, 'workdir') for s in workdirs]
  if names and len(names) != len(specs):
    raise clips_lib.EvaluateError('--names', f'{len(names)} names for {len(specs)} methods '
                                  '(--bundle then --workdir)')
  return [(spec, kind, names[i] if names else None) for i, (spec, kind) in enumerate(specs)]


def load_methods(specs: Sequence[tuple[str, str, str | None]], scale: int, *,
                 dtype: str = 'float32', tile: int = 0, tile_overlap: int = 16,
                 batch: int = 1, engine: str = 'jax') -> list[Method]:
  """The bicubic baseline, then the method of each of method_specs' entries."""
  return [bicubic_method(scale)] + [
      load_method(spec, scale, kind=kind, name=name, dtype=dtype, tile=tile,
                  tile_overlap=tile_overlap, batch=batch, engine=engine)
      for spec, kind, name in specs]
