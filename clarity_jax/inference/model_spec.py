"""What fixes a trained network's structure: variant, scale, K, the ablation
switches and the uncertainty head, read from a training config or from a
bundle's bundle.json."""

from __future__ import annotations

import dataclasses
from typing import Any

from flax import nnx

from clarity_jax.models import claritynet

MAX_NUM_NEIGHBORS = 8  # a hostile bundle.json must not ask for million-frame windows
_ALLOWED = {'variant': claritynet.VARIANTS, 'scale': (1, 2, 4),
            'num_neighbors': range(MAX_NUM_NEIGHBORS + 1)}


class FieldError(ValueError):
  """A model field of the wrong type or out of range."""


@dataclasses.dataclass(frozen=True)
class ModelSpec:
  """The fields of configs/default.py that fix the network's structure."""
  variant: str
  scale: int
  num_neighbors: int
  use_alignment: bool = True
  use_attention: bool = True
  uncertainty: bool = False  # the per-pixel error-scale head (absent before it existed)
  warp_features: bool = False  # encoder features warped, not pixels (absent before)

  @classmethod
  def from_config(cls, config: Any) -> 'ModelSpec':
    return cls(variant=str(config.model.variant), scale=int(config.scale),
               num_neighbors=int(config.num_neighbors),
               use_alignment=bool(config.model.use_alignment),
               use_attention=bool(config.model.use_attention),
               uncertainty=bool(config.model.get('uncertainty', False)),
               warp_features=bool(config.model.get('warp_features', False)))

  @classmethod
  def from_json(cls, model: dict[str, Any]) -> 'ModelSpec':
    """bundle.json's model fields, each checked for type (no bool for an int, no
    "false" for a bool) and range (FieldError); a field added later may be absent."""
    values = {}
    for f in dataclasses.fields(cls):
      value = model[f.name] if f.name in model or f.default is dataclasses.MISSING else f.default
      if type(value).__name__ != f.type:
        raise FieldError(f'model.{f.name} is {value!r}, not a JSON {f.type}')
      if value not in _ALLOWED.get(f.name, (value,)):
        raise FieldError(f'model.{f.name} is {value!r}; expected one of '
                         f'{sorted(_ALLOWED[f.name])}')
      values[f.name] = value
    return cls(**values)

  @property
  def num_frames(self) -> int:
    return 2 * self.num_neighbors + 1

  def create(self, dtype: str = 'float32', seed: int = 0) -> claritynet.ClarityNetSR:
    return claritynet.create_model(
        self.variant, scale=self.scale, num_neighbors=self.num_neighbors,
        use_alignment=self.use_alignment, use_attention=self.use_attention,
        uncertainty=self.uncertainty, warp_features=self.warp_features, dtype=dtype,
        rngs=nnx.Rngs(seed))
