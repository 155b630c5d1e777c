"""Parameters by name: 'encoder/conv0/kernel'. Checkpoints, bundles and the
optimiser's partitions all name a parameter this way, so the name is the model's."""

from __future__ import annotations

from typing import Any

import jax
from flax import nnx


def _key_name(key: Any) -> str:
  for attr in ('key', 'idx', 'name'):  # DictKey, SequenceKey, GetAttrKey
    if hasattr(key, attr):
      return str(getattr(key, attr))
  return str(key)


def leaf_name(path: tuple[Any, ...]) -> str:
  """'a/b/c': a parameter's name in checkpoints and bundles alike."""
  return '/'.join(_key_name(k) for k in path)


def flat_leaves(tree: Any) -> dict[str, Any]:
  """{'a/b/c': leaf} of any pytree (arrays, ShapeDtypeStructs, orbax metadata)."""
  if isinstance(tree, nnx.State):
    tree = nnx.to_pure_dict(tree)
  return {leaf_name(path): leaf for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]}
