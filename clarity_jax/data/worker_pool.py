"""Examples made in worker processes, for the thread loader's batches (loader.py).

Why processes: an example of the synthetic camera with eq. (1) on the device is a
few small arrays drawn in Python (about 2 ms), which holds the GIL, so threads do
not add up: one process makes about 450 such windows per second, far fewer than an
accelerator trains on. N processes make N times as many.

Why not multiprocessing: it pickles what crosses, and no pickle goes near this
package's data. Each worker is `python -m clarity_jax.data.worker_pool`, given the
config as JSON on its first stdin line; it builds the same ExampleMaker and then
answers requests 'INDEX SLOT' by writing make(INDEX) into slot SLOT of a shared
memory block, laid out by make.spec, and replying 'ok SLOT' (or 'error SLOT' and
the exception's class and message as JSON). Examples are pure functions of (seed,
index), so which worker makes one changes nothing: batches are byte for byte the
thread pool's.

`ExamplePool` is the parent's side, shaped as the executor loader._batches takes:
submit() returns a Future, shutdown() ends the workers and frees the memory.
"""

from __future__ import annotations

from concurrent import futures
import importlib
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
import weakref
from typing import Any, Mapping

import ml_collections
import numpy as np

Layout = list[tuple[str, int, tuple[int, ...], str]]  # key, byte offset, shape, dtype
_LIVE: weakref.WeakSet[ExamplePool] = weakref.WeakSet()


def cpu_seconds() -> float:
  """CPU time of the worker processes of every live pool of this process, so that a
  benchmark counts it with the process's own (time.process_time counts neither)."""
  return sum(pool.cpu_seconds() for pool in list(_LIVE))


def layout(spec: Mapping[str, tuple[tuple[int, ...], Any]]) -> tuple[Layout, int]:
  """(where each key of an example lies in a slot, the slot's size in bytes)."""
  out, offset = [], 0
  for key, (shape, dtype) in spec.items():
    dtype = np.dtype(dtype)
    offset = -(-offset // 64) * 64  # each array 64-byte aligned
    out.append((key, offset, tuple(int(d) for d in shape), dtype.str))
    offset += int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
  return out, max(-(-offset // 64) * 64, 64)


def _views(buf: memoryview, slot: int, slot_bytes: int, lay: Layout) -> dict[str, np.ndarray]:
  base = slot * slot_bytes
  return {key: np.ndarray(shape, np.dtype(dtype), buf, base + offset)
          for key, offset, shape, dtype in lay}


def _rebuild(kind: str, message: str) -> Exception:
  """A worker's exception as the parent raises it: the same class when it is one of
  this package's or a builtin (and takes a message), else a RuntimeError naming it."""
  module, _, name = kind.rpartition('.')
  if module == 'builtins' or module.startswith('clarity_jax.'):
    try:
      cls = getattr(importlib.import_module(module), name)
      if isinstance(cls, type) and issubclass(cls, Exception):
        return cls(message)
    except Exception:  # pylint: disable=broad-except
      pass
  return RuntimeError(f'{kind}: {message}')


class ExamplePool:
  """make(i) of `maker` ('train' or 'eval': examples.train_maker / eval_maker of
  `config`) in `workers` processes, at most `slots` examples in flight."""

  def __init__(self, config: ml_collections.ConfigDict, maker: str,
               spec: Mapping[str, tuple[tuple[int, ...], Any]], workers: int, slots: int):
    from multiprocessing import shared_memory  # pylint: disable=g-import-not-at-top
    self._layout, self._slot_bytes = layout(spec)
    self._shm = shared_memory.SharedMemory(create=True, size=self._slot_bytes * slots)
    self._free = list(range(slots))
    self._lock = threading.Lock()
    self._pending: list[dict[int, futures.Future]] = []
    self._cpu: list[float] = []  # each worker's CPU seconds, as it last reported them
    self._dead: dict[int, str] = {}  # worker -> why it is gone
    self._procs: list[subprocess.Popen] = []
    self._logs = []
    header = json.dumps({'maker': maker, 'config': config.to_json(), 'shm': self._shm.name,
                         'layout': self._layout, 'slot_bytes': self._slot_bytes})
    # The workers only draw NumPy arrays: keep them off any accelerator.
    env = dict(os.environ, JAX_PLATFORMS='cpu')
    try:
      for _ in range(max(1, workers)):
        log = tempfile.TemporaryFile()
        proc = subprocess.Popen([sys.executable, '-m', 'clarity_jax.data.worker_pool'],
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log,
                                env=env, text=True, bufsize=1)
        proc.stdin.write(header + '\n')
        self._procs.append(proc)
        self._logs.append(log)
        self._pending.append({})
        self._cpu.append(0.0)
    except BaseException:
      self.shutdown()
      raise
    self._readers = [threading.Thread(target=self._read, args=(w,), daemon=True,
                                      name=f'clarity_jax.loader.worker{w}')
                     for w in range(len(self._procs))]
    for reader in self._readers:
      reader.start()
    _LIVE.add(self)

  def cpu_seconds(self) -> float:
    """CPU time the workers spent so far (as of their latest replies)."""
    return sum(self._cpu)

  def submit(self, make: Any, index: int) -> futures.Future:
    """make(index) in a worker (its own maker: `make` is this process's, unused)."""
    del make
    future: futures.Future = futures.Future()
    with self._lock:
      if self._dead:  # a worker exited: the stream ends with its error
        future.set_exception(RuntimeError(next(iter(self._dead.values()))))
        return future
      if not self._free:
        raise RuntimeError('ExamplePool: more examples in flight than slots')
      slot = self._free.pop()
      worker = min(range(len(self._procs)), key=lambda w: len(self._pending[w]))
      self._pending[worker][slot] = future
    try:
      self._procs[worker].stdin.write(f'{int(index)} {slot}\n')
    except (BrokenPipeError, ValueError, OSError):
      with self._lock:  # gone before its reader saw it: fail the example here
        if self._pending[worker].pop(slot, None) is not None:
          self._free.append(slot)
          future.set_exception(RuntimeError(
              f'example worker {self._procs[worker].pid} exited'))
    return future

  def _read(self, w: int) -> None:
    proc = self._procs[w]
    for line in proc.stdout:
      status, slot, *rest = line.rstrip('\n').split(' ', 2)
      slot = int(slot)
      if status == 'ok':
        self._cpu[w] = float(rest[0])
        outcome: Any = {k: np.array(v) for k, v in _views(  # copied out of the slot
            self._shm.buf, slot, self._slot_bytes, self._layout).items()}
      else:
        error = json.loads(rest[0])
        outcome = _rebuild(error['type'], error['message'])
      # The slot is free before the future is done: the consumer, woken by it,
      # submits the next example at once.
      with self._lock:
        future = self._pending[w].pop(slot)
        self._free.append(slot)
      if not future.set_running_or_notify_cancel():
        continue  # cancelled while in flight
      if isinstance(outcome, Exception):
        future.set_exception(outcome)
      else:
        future.set_result(outcome)
    code = proc.wait()
    log = self._logs[w]
    log.seek(0)
    tail = log.read().decode('utf-8', 'replace').strip().splitlines()[-1:] or ['']
    message = f'example worker {proc.pid} exited with status {code}: {tail[0]}'.rstrip(': ')
    with self._lock:
      self._dead[w] = message
      lost, self._pending[w] = self._pending[w], {}
      self._free.extend(lost)
    for future in lost.values():
      if future.set_running_or_notify_cancel():
        future.set_exception(RuntimeError(message))

  def shutdown(self, wait: bool = True, cancel_futures: bool = True) -> None:
    """Ends the workers (their stdin closes: they exit), then frees the shared memory."""
    del wait, cancel_futures  # always both: what is in flight is dropped
    _LIVE.discard(self)
    for proc in self._procs:
      try:
        proc.stdin.close()
      except OSError:
        pass
    for proc in self._procs:
      try:
        proc.wait(timeout=10)
      except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
    for reader in getattr(self, '_readers', []):
      reader.join()
    for log in self._logs:
      log.close()
    self._shm.close()
    self._shm.unlink()


def _serve() -> None:
  """The worker: the header, then one example per request line, until stdin ends."""
  from multiprocessing import resource_tracker  # pylint: disable=g-import-not-at-top
  from multiprocessing import shared_memory  # pylint: disable=g-import-not-at-top
  from clarity_jax.data import examples  # pylint: disable=g-import-not-at-top
  header = json.loads(sys.stdin.readline())
  config = ml_collections.ConfigDict(json.loads(header['config']))
  make = {'train': examples.train_maker, 'eval': examples.eval_maker}[header['maker']](config)
  shm = shared_memory.SharedMemory(name=header['shm'])
  # The parent owns the block: this process must not unlink it when it exits.
  resource_tracker.unregister(shm._name, 'shared_memory')  # pylint: disable=protected-access
  lay = [(k, o, tuple(s), d) for k, o, s, d in header['layout']]
  # Replies go to the real stdout alone: anything else printing goes to stderr.
  replies = os.fdopen(os.dup(1), 'w', buffering=1)
  os.dup2(2, 1)
  sys.stdout = sys.stderr
  for line in sys.stdin:
    index, slot = (int(v) for v in line.split())
    try:
      _write(shm.buf, slot, header['slot_bytes'], lay, make(index))
      reply = f'ok {slot} {time.process_time():.6f}'
    except Exception as e:  # pylint: disable=broad-except
      kind = f'{type(e).__module__}.{type(e).__qualname__}'
      reply = f'error {slot} ' + json.dumps({'type': kind, 'message': str(e)})
    replies.write(reply + '\n')
  shm.close()


def _write(buf: memoryview, slot: int, slot_bytes: int, lay: Layout,
           example: Mapping[str, np.ndarray]) -> None:
  for key, view in _views(buf, slot, slot_bytes, lay).items():
    view[...] = example[key]


if __name__ == '__main__':
  _serve()
