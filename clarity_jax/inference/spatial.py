"""Frames split by rows over devices: a 'space' mesh axis for 4K/8K restoration.

A 960x540 -> 3840x2160 window of the base model holds gigabytes of activations;
splitting its rows over the devices of a ('data', 'space') mesh divides them, and
the compute, by the size of 'space'. Nothing in the model changes: jit is given
the input and output shardings, and XLA's SPMD partitioner splits every op along
the rows, exchanging halo rows between neighbouring devices where a convolution,
pooling or resize window crosses a shard border (collective-permutes). Only the
warp, a data-dependent gather, reads whole frames; it reads the 3-channel input,
not features.

The split forward pass is the model's own function: rows are padded to a multiple
of the 'space' size only to place the input, and cut off again inside the jitted
function before the model sees them, so the result equals `model(lq)` whatever h.
Training crops split the same way (split_batch_shardings, jit_train_step_split).
Only the height is split: frames are wider than tall, and one axis keeps every
shard's halo to two borders.
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING, Any, Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from jax.experimental import multihost_utils
from jax.sharding import AxisType, Mesh, NamedSharding, PartitionSpec as P

from clarity_jax.train import step as ts

if TYPE_CHECKING:  # only for hints: ml_collections is not needed to run this module
  import ml_collections

DATA = 'data'
SPACE = 'space'


def make_spatial_mesh(num_data: int = 1, num_space: int | None = None,
                      devices: Sequence[jax.Device] | None = None) -> Mesh:
  """A (num_data, num_space) mesh: windows split over 'data', frame rows over 'space'.

  num_space defaults to all the devices not used by 'data'. jax.make_mesh orders
  the devices for the interconnect (neighbouring 'space' shards, which exchange
  halos, on neighbouring chips).
  """
  devices = list(jax.devices() if devices is None else devices)
  if num_space is None:
    num_space = len(devices) // max(num_data, 1)
  if num_data < 1 or num_space < 1 or num_data * num_space != len(devices):
    raise ValueError(f'make_spatial_mesh: {num_data} x {num_space} (data x space) does not '
                     f'use the {len(devices)} devices exactly')
  return jax.make_mesh((num_data, num_space), (DATA, SPACE),
                       axis_types=(AxisType.Auto, AxisType.Auto), devices=devices)


def window_sharding(mesh: Mesh) -> NamedSharding:
  """LQ windows [B, T, h, w, 3]: B over 'data', h over 'space'."""
  return NamedSharding(mesh, P(DATA, None, SPACE))


def frame_sharding(mesh: Mesh) -> NamedSharding:
  """Frames [B, H, W, 3]: B over 'data', H over 'space'."""
  return NamedSharding(mesh, P(DATA, SPACE))


def _num_space(mesh: Mesh) -> int:
  if set(mesh.axis_names) != {DATA, SPACE}:
    raise ValueError(f'spatial: want a mesh with axes ({DATA!r}, {SPACE!r}) '
                     f'(make_spatial_mesh), got {mesh.axis_names}')
  return mesh.shape[SPACE]


def padded_rows(h: int, mesh: Mesh) -> int:
  """h rounded up to a multiple of the 'space' size: the rows that are placed."""
  n = _num_space(mesh)
  return -(-h // n) * n


@functools.lru_cache(maxsize=32)
def jit_restore_split(graphdef: nnx.GraphDef, mesh: Mesh, h: int
                      ) -> Callable[[ts.Params, jax.Array], jax.Array]:
  """The split forward pass for frames of h rows: fn(params, lq_padded) -> output.

  lq_padded [B, T, padded_rows(h), w, 3] (placed with window_sharding; its extra
  rows are ignored) -> [B, s * padded_rows(h), s w, 3] with frame_sharding; rows
  from s h on are zero. Params are replicated. Compiled once per (model, mesh, h)
  and input shape.
  """
  rows = padded_rows(h, mesh)

  def forward(params: ts.Params, lq: jax.Array) -> jax.Array:
    out = ts.apply_model(graphdef, params, lq[:, :, :h])
    scale = out.shape[1] // h
    # Zero rows back up to an even split over 'space' (restore_split cuts them).
    return jnp.pad(out, ((0, 0), (0, scale * (rows - h)), (0, 0), (0, 0)))

  return jax.jit(forward, in_shardings=(ts.replicated(mesh), window_sharding(mesh)),
                 out_shardings=frame_sharding(mesh))


def place_window(lq: np.ndarray, mesh: Mesh) -> jax.Array:
  """Host lq [B, T, h, w, 3] -> edge-padded to padded_rows(h) and split over the mesh.

  Every process passes the same whole batch (inference reads the same frames on
  every host); each keeps only its devices' blocks.
  """
  _num_space(mesh)  # checks the axes
  lq = np.asarray(lq, np.float32)
  if lq.ndim != 5:
    raise ValueError(f'spatial: want lq [B, T, h, w, 3], got shape {lq.shape}')
  if lq.shape[0] % mesh.shape[DATA]:
    raise ValueError(f'spatial: batch {lq.shape[0]} is not divisible by the '
                     f"{mesh.shape[DATA]} devices of the '{DATA}' axis")
  h = lq.shape[2]
  lq = np.pad(lq, ((0, 0), (0, 0), (0, padded_rows(h, mesh) - h), (0, 0), (0, 0)), 'edge')
  sharding = window_sharding(mesh)
  return jax.make_array_from_callback(lq.shape, sharding, lambda index: lq[index])


def restore_split(graphdef: nnx.GraphDef, params: ts.Params, lq: np.ndarray | jax.Array,
                  mesh: Mesh) -> np.ndarray:
  """model(lq) computed with rows split over 'space' and windows over 'data'.

  lq [B, 2K+1, h, w, 3] in [0, 1], any h, w; B divisible by the 'data' size.
  Returns the restored frames [B, s h, s w, 3] float32 on the host (they are
  written to files next; for an 8K frame the host, not one device, holds them).
  """
  placed = place_window(np.asarray(lq), mesh)
  h = np.shape(lq)[2]
  out = jit_restore_split(graphdef, mesh, h)(jax.device_put(params, ts.replicated(mesh)),
                                              placed)
  scale = out.shape[1] // padded_rows(h, mesh)
  if not out.is_fully_addressable:  # several hosts: gather every host's rows
    out = multihost_utils.process_allgather(out, tiled=True)
  return np.asarray(out)[:, :scale * h]


# ---- Training on high-resolution crops ------------------------------------------

def split_batch_shardings(mesh: Mesh, batch: dict[str, Any]) -> dict[str, NamedSharding]:
  """Per key of a training batch: windows ('lq', 'lq_next') and frames ('hr',
  'hr_next') split by rows, windows of the batch over 'data'."""
  return {k: window_sharding(mesh) if np.ndim(v) == 5 else frame_sharding(mesh)
          for k, v in batch.items()}


def place_batch(mesh: Mesh, local_batch: dict[str, np.ndarray]) -> ts.Batch:
  """Each host's numpy batch (its rows of the global batch, whole frames) -> global
  arrays split by rows. The crop height must divide by the 'space' size."""
  shardings = split_batch_shardings(mesh, local_batch)
  return {k: jax.make_array_from_process_local_data(shardings[k], v)
          for k, v in local_batch.items()}


def jit_train_step_split(config: ml_collections.ConfigDict, graphdef: nnx.GraphDef,
                         mesh: Mesh, batch: dict[str, Any],
                         perceptual: ts.PerceptualFn | None = None
                         ) -> Callable[..., tuple[ts.TrainState, dict[str, jax.Array]]]:
  """train_step over a ('data', 'space') mesh: step(state, batch, vgg_params).

  As ts.jit_train_step, with every crop split by rows as well: activations per
  device shrink with the 'space' size, so crops too large for one device train.
  `batch` (arrays or shapes) names the keys. Gradients are summed over both axes
  by XLA.
  """
  rep = ts.replicated(mesh)

  def step(state, batch, vgg_params):
    return ts.train_step(config, graphdef, state, batch, perceptual, vgg_params)

  return jax.jit(step, in_shardings=(rep, split_batch_shardings(mesh, batch), rep),
                 out_shardings=(rep, rep), donate_argnums=(0,))
