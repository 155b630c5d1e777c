"""Frames split by rows over devices (the 'space' mesh axis) for 4K/8K restoration.

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
Training crops split the same way (sharding.py, train/step.py).
"""

from __future__ import annotations

import functools
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from jax.experimental import multihost_utils
from jax.sharding import Mesh

from clarity_jax import sharding
from clarity_jax.train import step as ts


def _num_space(mesh: Mesh) -> int:
  sharding.check_mesh(mesh)
  return mesh.shape[sharding.SPACE]


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

  return jax.jit(forward,
                 in_shardings=(sharding.replicated(mesh), sharding.window_sharding(mesh)),
                 out_shardings=sharding.frame_sharding(mesh))


def place_window(lq: np.ndarray, mesh: Mesh) -> jax.Array:
  """Host lq [B, T, h, w, 3] -> edge-padded to padded_rows(h) and split over the mesh.

  Every process passes the same whole batch (inference reads the same frames on
  every host); each keeps only its devices' blocks.
  """
  _num_space(mesh)  # checks the axes
  lq = np.asarray(lq, np.float32)
  if lq.ndim != 5:
    raise ValueError(f'spatial: want lq [B, T, h, w, 3], got shape {lq.shape}')
  if lq.shape[0] % mesh.shape[sharding.DATA]:
    raise ValueError(f'spatial: batch {lq.shape[0]} is not divisible by the '
                     f"{mesh.shape[sharding.DATA]} devices of the '{sharding.DATA}' axis")
  h = lq.shape[2]
  lq = np.pad(lq, ((0, 0), (0, 0), (0, padded_rows(h, mesh) - h), (0, 0), (0, 0)), 'edge')
  return jax.make_array_from_callback(lq.shape, sharding.window_sharding(mesh),
                                      lambda index: lq[index])


def restore_split(graphdef: nnx.GraphDef, params: ts.Params, lq: np.ndarray | jax.Array,
                  mesh: Mesh) -> np.ndarray:
  """model(lq) computed with rows split over 'space' and windows over 'data'.

  lq [B, 2K+1, h, w, 3] in [0, 1], any h, w; B divisible by the 'data' size.
  Returns the restored frames [B, s h, s w, 3] float32 on the host (they are
  written to files next; for an 8K frame the host, not one device, holds them).
  """
  placed = place_window(np.asarray(lq), mesh)
  h = np.shape(lq)[2]
  out = jit_restore_split(graphdef, mesh, h)(
      jax.device_put(params, sharding.replicated(mesh)), placed)
  scale = out.shape[1] // padded_rows(h, mesh)
  if not out.is_fully_addressable:  # several hosts: gather every host's rows
    out = multihost_utils.process_allgather(out, tiled=True)
  return np.asarray(out)[:, :scale * h]
