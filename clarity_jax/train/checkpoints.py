"""Orbax checkpoints that survive preemption (MaxText's recipe).

A checkpoint holds the whole TrainState (parameters, optimizer state, EMA, step)
and a JSON record of the data stream position and the config, so that a restarted
run continues the exact same stream and `export` can rebuild the model without the
training config file. Saves happen every `checkpoint_every_steps`, on SIGTERM and at
the end; orbax writes to a temporary folder and renames it when complete, so a crash
mid-save leaves the previous checkpoint intact.
"""

from __future__ import annotations

import asyncio
import gc
import json
import os
from pathlib import Path
import re
import signal
import sys
import threading
from typing import Any, Callable, TypeVar
import warnings

import jax
import ml_collections
import orbax.checkpoint as ocp
from absl import logging
from etils import epath

from clarity_jax import errors
from clarity_jax.models import parameters
from clarity_jax.train import state as state_lib

_T = TypeVar('_T')


def checkpoint_dir(workdir: str | os.PathLike) -> epath.Path:
  """WORKDIR/checkpoints, made absolute for local paths (orbax refuses relative ones)."""
  workdir = os.fspath(workdir)
  return epath.Path(workdir if '://' in workdir else os.path.abspath(workdir)) / 'checkpoints'


class CheckpointError(errors.PathError):
  """The workdir holds no usable checkpoint: '<path>: <what>'."""


# tensorstore names the array it failed on: 'Error reading "ema_params.x.kernel/0.0.0.0"'.
_ARRAY_NAME = re.compile(r'Error reading "([^"/]+)')
# ... after a status code: 'OUT_OF_RANGE: ...', 'DATA_LOSS: ...'.
_STATUS = re.compile(r'([A-Z][A-Z_]+): ')


def _files_broken(error: BaseException | None) -> str | None:
  """A short reason when `error` (or what caused it) is tensorstore failing on the
  checkpoint's files, else None (a bug, which keeps its traceback).

  orbax wraps tensorstore's ValueError in a bare Exception whose message carries
  the whole tensorstore spec (kilobytes); the user needs the array and the code.
  """
  while error is not None:
    status = _STATUS.match(str(error)) if isinstance(error, ValueError) else None
    if status:
      name = _ARRAY_NAME.search(str(error))
      what = f'array {name.group(1)}' if name else 'arrays'
      return f'unreadable {what} ({status.group(1)}: truncated or corrupt?)'
    error = error.__cause__ or error.__context__
  return None


def _read_files(step_dir: str | os.PathLike, read: Callable[[], _T]) -> _T:
  """read(), with tensorstore failing on the files of checkpoint `step_dir` as the
  CheckpointError '<step_dir>: unreadable array <name> (<code>: truncated or corrupt?)'.

  The first failed read ends orbax's restore and closes its event loop while the
  other reads are still in flight: each then reports, as an unraisable exception,
  'Event loop is closed' when tensorstore finishes it (from its own threads, as
  soon as the loop closes or as late as the interpreter's exit), or its own
  failure when collected. Those would bury the one-line error under tracebacks:
  _drop_abandoned_reads keeps them off stderr, from before the first read on.
  """
  _drop_abandoned_reads()
  try:
    return read()
  except Exception as e:  # pylint: disable=broad-except  (orbax raises a bare Exception)
    broken = _files_broken(e)
    if broken is None:
      raise
  # Collected now, once the exception that held them is gone, not at exit; one
  # never started warns when collected.
  warnings.filterwarnings('ignore', "coroutine '.*' was never awaited", RuntimeWarning)
  disabled, asyncio.log.logger.disabled = asyncio.log.logger.disabled, True
  try:
    gc.collect()  # quietly: 'Task was destroyed but it is pending!'
  finally:
    asyncio.log.logger.disabled = disabled
  raise CheckpointError(step_dir, broken)


def _drop_abandoned_reads() -> None:
  """Drops what reads abandoned by orbax report ('Event loop is closed'; an orbax
  coroutine's or task's failure), through sys.unraisablehook or asyncio's logger
  ('Task exception was never retrieved'), and passes on everything else, once per
  process. A healthy restore reports neither."""
  previous = sys.unraisablehook
  if getattr(previous, 'drops_abandoned_reads', False):
    return
  orbax_code = f'{os.sep}orbax{os.sep}'

  # No globals: it also runs while the interpreter exits, when they are gone.
  def from_orbax(error, orbax_code=orbax_code, getattr=getattr) -> bool:
    """Whether `error`, or what caused it, was raised in orbax's code."""
    while error is not None:
      tb = getattr(error, '__traceback__', None)
      while tb is not None:
        if orbax_code in tb.tb_frame.f_code.co_filename:
          return True
        tb = tb.tb_next
      error = error.__cause__ or error.__context__
    return False

  def hook(unraisable, previous=previous, orbax_code=orbax_code, str=str,
           getattr=getattr, from_orbax=from_orbax) -> None:
    obj = unraisable.object
    code = getattr(obj, 'cr_code', None) or getattr(
        getattr(obj, 'get_coro', lambda: None)(), 'cr_code', None)
    if not (str(unraisable.exc_value) == 'Event loop is closed'
            or (code is not None and orbax_code in code.co_filename)
            or from_orbax(unraisable.exc_value)):
      previous(unraisable)
  hook.drops_abandoned_reads = True
  sys.unraisablehook = hook

  def abandoned(record, from_orbax=from_orbax) -> bool:
    """False (drop) for asyncio's report of a task that failed in orbax."""
    return not (record.exc_info and from_orbax(record.exc_info[1]))
  asyncio.log.logger.addFilter(abandoned)


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

  def uninstall(self) -> None:
    """Gives SIGTERM back to the handler it had before."""
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

  def read_meta(self, step: int) -> dict:
    """The JSON record of checkpoint `step`, without touching its arrays."""
    return self.manager.restore(step, args=ocp.args.Composite(meta=ocp.args.JsonRestore())).meta

  def restore(self, abstract_state: Any, step: int | None = None) -> tuple[Any, dict]:
    """Restores into the shapes, dtypes and shardings of `abstract_state`."""
    step = self.manager.latest_step() if step is None else step
    restored = _read_files(self.directory / str(step), lambda: self.manager.restore(
        step, args=ocp.args.Composite(state=ocp.args.StandardRestore(abstract_state),
                                      meta=ocp.args.JsonRestore())))
    return restored.state, restored.meta

  def close(self) -> None:
    self.manager.wait_until_finished()
    self.manager.close()
    if self.watcher is not None:
      self.watcher.uninstall()


def read_meta(workdir: str, step: int | None = None) -> tuple[int, dict]:
  """The JSON record of a checkpoint, without touching its arrays (for export)."""
  directory = checkpoint_dir(workdir)
  with ocp.CheckpointManager(directory) as manager:
    step = manager.latest_step() if step is None else step
    if step is None:
      raise FileNotFoundError(f'{directory}: no checkpoint found')
    meta = manager.restore(step, args=ocp.args.Composite(meta=ocp.args.JsonRestore())).meta
  return step, meta


def restore_params(workdir: str | os.PathLike, step: int | None = None, *,
                   weights: str = 'eval') -> tuple[Any, ml_collections.ConfigDict, int, str]:
  """(params, config, step, 'ema' | 'raw') of a checkpoint, without the optimizer.

  weights='eval' reads the EMA copy when the run kept one (it restores better:
  export and evaluate use it), 'raw' the trained parameters themselves. Only
  that subtree is read (an orbax partial restore), so exporting a large model
  does not also load its two Adam moments. The one reader of checkpoints outside
  the training loop: export, evaluate and the tests all use it.
  """
  if weights not in ('eval', 'raw'):
    raise ValueError(f"restore_params: weights must be 'eval' or 'raw', got {weights!r}")
  want_ema = weights == 'eval'
  workdir = Path(workdir)
  directory = checkpoint_dir(workdir)  # absolute: orbax wants it so
  if not directory.is_dir():
    raise CheckpointError(workdir, 'no checkpoints/ folder (not a training workdir?)')
  if step is not None and not (directory / str(step)).is_dir():
    saved = sorted(int(p.name) for p in directory.iterdir() if p.name.isdigit())
    raise CheckpointError(directory, f'no checkpoint of step {step} (saved steps: '
                          f'{", ".join(map(str, saved)) or "none"})')
  try:
    step, meta = read_meta(str(workdir), step)
  except FileNotFoundError as e:
    raise CheckpointError(workdir, 'no checkpoint found under checkpoints/') from e
  except (ValueError, KeyError) as e:  # orbax: no such step
    raise CheckpointError(directory, f'cannot read step {step} ({e})') from e
  config = ml_collections.ConfigDict(json.loads(meta['config']))
  step_dir = directory / str(step)
  try:
    abstract = jax.eval_shape(lambda: state_lib.init_state(config))
  except errors.ConfigError as e:  # 'config.<field>: ...': a model this code lacks
    raise CheckpointError(step_dir, f'saved {e}') from None
  sharding = jax.sharding.SingleDeviceSharding(jax.devices()[0])
  to_abstract = lambda tree: jax.tree.map(
      lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=sharding), tree)
  target = {'params': to_abstract(abstract.params)}
  weights = 'raw'
  if want_ema and abstract.ema_params is not None:
    target = {'ema_params': to_abstract(abstract.ema_params)}
    weights = 'ema'
  _check_saved_params(step_dir / 'state', weights + '_params' if weights == 'ema'
                      else 'params', abstract.params)
  with ocp.CheckpointManager(directory) as manager:
    restored = _read_files(step_dir, lambda: manager.restore(
        step, args=ocp.args.Composite(state=ocp.args.PyTreeRestore(
            item=target, restore_args=ocp.checkpoint_utils.construct_restore_args(target),
            partial_restore=True))))
  params = restored.state['ema_params' if weights == 'ema' else 'params']
  return jax.device_get(params), config, int(step), weights


def _check_saved_params(state_dir: Path, item: str, expected: Any) -> None:
  """The checkpoint's parameter names and shapes must be the current model's.

  A partial restore would silently drop parameters the current model code no
  longer has (e.g. a checkpoint from before a layer lost its bias): the bundle
  would then compute something else than the run that was trained.
  """
  if not state_dir.is_dir():
    raise CheckpointError(state_dir, 'missing: the checkpoint is incomplete')
  handler = ocp.PyTreeCheckpointHandler()
  try:
    tree = _read_files(state_dir, lambda: handler.metadata(epath.Path(state_dir)))
  except CheckpointError:
    raise
  except (OSError, ValueError) as e:  # not tensorstore's: _METADATA is not JSON
    raise CheckpointError(state_dir, f'unreadable checkpoint metadata ({e})') from e
  finally:
    handler.close()
  tree = getattr(tree, 'tree', tree)
  if item not in tree:
    raise CheckpointError(state_dir, f'no {item!r} in the checkpoint')
  saved = {k: tuple(v.shape) for k, v in parameters.flat_leaves(tree[item]).items()}
  want = {k: tuple(v.shape) for k, v in parameters.flat_leaves(expected).items()}
  if saved != want:
    diff = sorted(set(saved) ^ set(want)) or sorted(k for k in saved if saved[k] != want[k])
    raise CheckpointError(
        state_dir, 'checkpoint parameters differ from the current model code '
        f'({len(saved)} saved, {len(want)} expected; e.g. {diff[0]!r}); export with the '
        'clarity_jax version that trained it')
