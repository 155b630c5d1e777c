"""Orbax checkpoints that survive preemption (MaxText's recipe).

A checkpoint holds the whole TrainState (parameters, optimizer state, EMA, step)
and a JSON record of the data stream position and the config, so that a restarted
run continues the exact same stream and `export` can rebuild the model without the
training config file. Saves happen every `checkpoint_every_steps`, on SIGTERM and at
the end; orbax writes to a temporary folder and renames it when complete, so a crash
mid-save leaves the previous checkpoint intact.
"""

from __future__ import annotations

import os
import signal
import threading
from typing import Any

import jax
import ml_collections
import orbax.checkpoint as ocp
from absl import logging
from etils import epath


def checkpoint_dir(workdir: str | os.PathLike) -> epath.Path:
  """WORKDIR/checkpoints, made absolute for local paths (orbax refuses relative ones)."""
  workdir = os.fspath(workdir)
  return epath.Path(workdir if '://' in workdir else os.path.abspath(workdir)) / 'checkpoints'


class PreemptionWatcher:
  """Turns SIGTERM into a flag the training loop polls (single host).

  On several hosts SIGTERM reaches each one at a different step; there the JAX
  coordination service's preemption sync point (orbax `reached_preemption`) makes all
  hosts agree on the step at which to save.
  """

  def __init__(self):
    self._event = threading.Event()
    self._previous = None
    if threading.current_thread() is threading.main_thread():
      self._previous = signal.signal(signal.SIGTERM, self._handle)

  def _handle(self, signum, frame):
    del signum, frame
    logging.warning('SIGTERM received: saving a checkpoint and stopping.')
    self._event.set()

  @property
  def requested(self) -> bool:
    return self._event.is_set()

  def restore(self) -> None:
    if self._previous is not None:
      signal.signal(signal.SIGTERM, self._previous)


class Checkpointer:
  """A thin wrapper naming the two items of a clarity_jax checkpoint."""

  def __init__(self, workdir: str, config: ml_collections.ConfigDict):
    self.directory = checkpoint_dir(workdir)
    self.manager = ocp.CheckpointManager(
        self.directory,
        options=ocp.CheckpointManagerOptions(
            max_to_keep=config.keep_checkpoints,
            create=True,
            enable_async_checkpointing=True))
    # Several hosts: JAX's preemption notifier (installed by jax.distributed) owns
    # SIGTERM; a Python handler would replace it and the hosts would never stop.
    self.watcher = PreemptionWatcher() if jax.process_count() == 1 else None

  def latest_step(self) -> int | None:
    return self.manager.latest_step()

  def should_stop_for_preemption(self, step: int) -> bool:
    if self.watcher is None:
      return self.manager.reached_preemption(step)
    return self.watcher.requested

  def save(self, step: int, state: Any, meta: dict[str, Any]) -> None:
    self.manager.save(
        step,
        args=ocp.args.Composite(state=ocp.args.StandardSave(state),
                                meta=ocp.args.JsonSave(meta)),
        force=True)

  def restore(self, abstract_state: Any, step: int | None = None) -> tuple[Any, dict]:
    """Restores into the shapes, dtypes and shardings of `abstract_state`."""
    step = self.manager.latest_step() if step is None else step
    restored = self.manager.restore(
        step,
        args=ocp.args.Composite(state=ocp.args.StandardRestore(abstract_state),
                                meta=ocp.args.JsonRestore()))
    return restored.state, restored.meta

  def close(self) -> None:
    self.manager.wait_until_finished()
    self.manager.close()
    if self.watcher is not None:
      self.watcher.restore()


def read_meta(workdir: str, step: int | None = None) -> tuple[int, dict]:
  """The JSON record of a checkpoint, without touching its arrays (for export)."""
  directory = checkpoint_dir(workdir)
  with ocp.CheckpointManager(directory) as manager:
    step = manager.latest_step() if step is None else step
    if step is None:
      raise FileNotFoundError(f'{directory}: no checkpoint found')
    meta = manager.restore(step, args=ocp.args.Composite(meta=ocp.args.JsonRestore())).meta
  return step, meta
