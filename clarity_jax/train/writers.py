"""Where training metrics go: clu's writers (TensorBoard) when TensorFlow is there,
else a JSON-lines file, so a host without TensorFlow trains and records the same.

clu's metric_writers and periodic_actions import TensorFlow (tf.summary) at import
time; the accelerator hosts this code must run on have none. The fallback writes
one JSON object per call to WORKDIR/metrics.jsonl (scalars with their step) and
logs them, the way clu's LoggingWriter would; images are already written as PNG
under WORKDIR/samples by the loop.
"""

from __future__ import annotations

import json
import os
import time
from typing import Any, Mapping, Protocol

from absl import logging
from etils import epath


class Writer(Protocol):
  """The part of clu.metric_writers.MetricWriter the loop uses."""

  def write_scalars(self, step: int, scalars: Mapping[str, Any]) -> None: ...
  def write_images(self, step: int, images: Mapping[str, Any]) -> None: ...
  def write_hparams(self, hparams: Mapping[str, Any]) -> None: ...
  def flush(self) -> None: ...


class JsonlWriter:
  """Scalars and hparams as JSON lines in WORKDIR/metrics.jsonl (chief only), logged."""

  def __init__(self, workdir: str | os.PathLike, just_logging: bool):
    self._path = None if just_logging else epath.Path(workdir) / 'metrics.jsonl'

  def _append(self, record: dict[str, Any]) -> None:
    if self._path is not None:
      with self._path.open('a') as f:
        f.write(json.dumps(record) + '\n')

  def write_scalars(self, step: int, scalars: Mapping[str, Any]) -> None:
    values = {k: float(v) for k, v in scalars.items()}
    logging.info('[%d] %s', step, ', '.join(f'{k}={v:.6g}' for k, v in values.items()))
    self._append({'step': int(step), **values})

  def write_images(self, step: int, images: Mapping[str, Any]) -> None:
    del step, images  # the loop writes the same pictures as PNG files

  def write_hparams(self, hparams: Mapping[str, Any]) -> None:
    self._append({'hparams': dict(hparams)})

  def flush(self) -> None:
    pass


class Progress:
  """steps/s every `every_steps` steps, written as clu's ReportProgress writes it."""

  def __init__(self, writer: Writer, every_steps: int):
    self._writer, self._every = writer, every_steps
    self._start, self._last = time.perf_counter(), None

  def __call__(self, step: int) -> None:
    if step % self._every:
      return
    now = time.perf_counter()
    if self._last is not None:
      last_step, last_time = self._last
      self._writer.write_scalars(step, {'steps_per_sec': (step - last_step) / (now - last_time),
                                        'uptime': now - self._start})
    self._last = (step, now)


def create(workdir: str, *, is_chief: bool, num_train_steps: int, every_steps: int
           ) -> tuple[Writer, Any]:
  """(writer, report_progress): clu's when it imports (TensorFlow present), else ours."""
  try:
    from clu import metric_writers, periodic_actions  # pylint: disable=g-import-not-at-top
  except ImportError:
    logging.info('clu/TensorFlow unavailable: metrics go to %s/metrics.jsonl', workdir)
    writer = JsonlWriter(workdir, just_logging=not is_chief)
    return writer, Progress(writer, every_steps)
  writer = metric_writers.create_default_writer(workdir, just_logging=not is_chief)
  return writer, periodic_actions.ReportProgress(num_train_steps=num_train_steps,
                                                 writer=writer, every_steps=every_steps)
