"""The one device mesh: windows over 'data', frame rows over 'space'.

Training, evaluation and split inference all run on a ('data', 'space') mesh.
space = 1 is plain data parallelism (every device takes its share of the global
batch); space > 1 also splits every frame by rows, for crops or frames too large
for one device: XLA's SPMD partitioner then exchanges the halo rows that a
convolution, pooling or resize window needs across a shard border. Only the
height is split: frames are wider than tall, and one axis keeps every shard's halo
to two borders. Parameters and optimizer state are replicated either way, so
checkpoints do not depend on the mesh.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import jax
import numpy as np
from jax.sharding import AxisType, Mesh, NamedSharding, PartitionSpec as P

DATA = 'data'
SPACE = 'space'


def make_mesh(num_space: int = 1, devices: Sequence[jax.Device] | None = None) -> Mesh:
  """A (len(devices) / num_space, num_space) mesh of axes ('data', 'space').

  jax.make_mesh orders the devices for the interconnect: neighbouring 'space'
  shards, which exchange halos, sit on neighbouring chips.
  """
  devices = list(jax.devices() if devices is None else devices)
  if not isinstance(num_space, int) or num_space < 1 or len(devices) % num_space:
    raise ValueError(f'make_mesh: {num_space!r} space shards do not divide the '
                     f'{len(devices)} devices')
  return jax.make_mesh((len(devices) // num_space, num_space), (DATA, SPACE),
                       axis_types=(AxisType.Auto, AxisType.Auto), devices=devices)


def replicated(mesh: Mesh) -> NamedSharding:
  return NamedSharding(mesh, P())


def window_sharding(mesh: Mesh) -> NamedSharding:
  """LQ windows [B, T, h, w, 3]: B over 'data', h over 'space'."""
  return NamedSharding(mesh, P(DATA, None, SPACE))


def frame_sharding(mesh: Mesh) -> NamedSharding:
  """Frames [B, H, W, 3]: B over 'data', H over 'space'."""
  return NamedSharding(mesh, P(DATA, SPACE))


def data_sharding(mesh: Mesh) -> NamedSharding:
  """Split by batch over 'data' only, whole along 'space' (evaluation batches)."""
  return NamedSharding(mesh, P(DATA))


# Batch entries that are pictures the model sees: windows [B, T, h, w, 3] and
# frames [B, H, W, 3], split by rows over 'space'. Everything else (degradation
# parameters, indices, and the HR windows eq. (1) degrades on the device, whole
# frames per window) is split by batch only.
PICTURE_KEYS = ('lq', 'lq_next', 'hr', 'hr_next')


def batch_sharding(mesh: Mesh, key: str, ndim: int) -> NamedSharding:
  """Picture windows (5-d) and frames (4-d) split by rows; anything else by batch only."""
  if key not in PICTURE_KEYS:
    return data_sharding(mesh)
  return {5: window_sharding, 4: frame_sharding}.get(ndim, data_sharding)(mesh)


def batch_shardings(mesh: Mesh, batch: Mapping[str, Any]) -> dict[str, NamedSharding]:
  """Per key of a batch (arrays, or shape tuples): its sharding."""
  return {k: batch_sharding(mesh, k, len(v) if isinstance(v, tuple) else np.ndim(v))
          for k, v in batch.items()}


def constrain_batch(mesh: Mesh, batch: Mapping[str, jax.Array]) -> dict[str, jax.Array]:
  """Inside jit: each entry laid out as batch_shardings says (after the batch was
  computed on the device, e.g. degraded, rather than placed)."""
  return {k: jax.lax.with_sharding_constraint(v, batch_sharding(mesh, k, v.ndim))
          for k, v in batch.items()}


def global_batch(mesh: Mesh, local_batch: Mapping[str, np.ndarray], *,
                 by_rows: bool = True) -> dict[str, jax.Array]:
  """Each host's numpy batch (its rows of the global batch, whole frames) becomes its
  slice of one global array per key: split by rows too (training crops, whose height
  must divide by the 'space' size) or, with by_rows=False, by batch only."""
  shardings = (batch_shardings(mesh, local_batch) if by_rows
               else dict.fromkeys(local_batch, data_sharding(mesh)))
  return {k: jax.make_array_from_process_local_data(shardings[k], v)
          for k, v in local_batch.items()}


def local_rows(x: jax.Array) -> np.ndarray:
  """This host's rows of an array split over 'data' only, in batch order."""
  shards = sorted(x.addressable_shards, key=lambda s: s.index[0].start or 0)
  seen, rows = set(), []
  for shard in shards:
    start = shard.index[0].start or 0
    if start not in seen:  # replicas along 'space' hold the same rows
      seen.add(start)
      rows.append(np.asarray(shard.data))
  return np.concatenate(rows, axis=0)
