"""The training loop: data -> sharded step -> metrics, samples and checkpoints.

Resuming is exact: the data stream is a pure function of (seed, example index), so
restoring the step restores the stream position too.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import time
from typing import Any, Callable, Iterable

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import tqdm
from absl import logging
from etils import epath
from flax import nnx
from jax.experimental import multihost_utils

from clarity_jax import config as config_lib
from clarity_jax import data
from clarity_jax import errors
from clarity_jax import sharding
from clarity_jax.media import frames
from clarity_jax.models import vgg
from clarity_jax.train import checkpoints
from clarity_jax.train import feed
from clarity_jax.train import losses
from clarity_jax.train import state as state_lib
from clarity_jax.train import step as ts
from clarity_jax.train import writers

# Returns (params, what they are, for the log): inference/warm_start.load.
WarmStart = Callable[[], tuple[Any, str]]


class NonFiniteLossError(RuntimeError):
  """The loss became NaN or Inf: the run stops before writing a checkpoint."""


def make_perceptual(config: ml_collections.ConfigDict
                    ) -> tuple[ts.PerceptualFn | None, state_lib.Params | None]:
  """The frozen VGG19 perceptual term, or (None, None) when no weights are configured."""
  if config.loss.perceptual_weight <= 0:
    return None, None
  if not config.loss.vgg_weights:
    _announce('perceptual loss off: config.loss.vgg_weights is empty (no VGG19 ImageNet '
              'weights file configured; nothing is downloaded)')
    return None, None
  graphdef, params = nnx.split(vgg.load_vgg19(config.loss.vgg_weights))
  layers = tuple(config.loss.perceptual_layers)

  def perceptual(vgg_params, pred, target):
    return losses.perceptual_loss((graphdef, vgg_params), pred, target, layers)

  logging.info('Perceptual loss on: VGG19 from %s, layers %s.', config.loss.vgg_weights,
               layers)
  return perceptual, params


def _announce(line: str) -> None:
  """A line of the run's progress, in the log and, from the chief, on stdout above
  the progress bar (where it shows even when INFO logs are off, the default)."""
  logging.info(line)
  if jax.process_index() == 0:
    tqdm.tqdm.write(line)


def _sample_grid(lq_bicubic: np.ndarray, output: np.ndarray, hr: np.ndarray,
                 n: int) -> np.ndarray:
  """Rows of (bicubic LQ | restored | ground truth) for the first n windows."""
  rows = [np.concatenate([lq_bicubic[i], output[i], hr[i]], axis=1)
          for i in range(min(n, len(hr)))]
  return np.clip(np.concatenate(rows, axis=0), 0.0, 1.0)


def validation_scores(eval_fn, params: state_lib.Params, mesh,
                      eval_batches: Iterable[dict[str, Any]]
                      ) -> tuple[dict[str, float], tuple[np.ndarray, ...] | None]:
  """Mean validation metrics over held-out windows, and this host's first batch of
  (bicubic, restored, ground truth) images for pictures."""
  sums = dict.fromkeys(ts.EVAL_SCALARS, 0.0)
  count = 0
  picture = None
  for local in eval_batches:
    out = eval_fn(params, sharding.global_batch(mesh, local, by_rows=False))
    scalars = jax.device_get({k: out[k] for k in ts.EVAL_SCALARS})  # one explicit fetch
    for key in ts.EVAL_SCALARS:
      sums[key] += float(scalars[key])
    count += out['output'].shape[0]
    if picture is None:
      picture = (sharding.local_rows(out['bicubic']), sharding.local_rows(out['output']),
                 local['hr'])
  return {k: v / max(count, 1) for k, v in sums.items()}, picture


def _check_finite(metrics: dict[str, Any], step: int) -> None:
  loss = float(jax.device_get(metrics['loss']))
  if not math.isfinite(loss):
    terms = {k: float(v) for k, v in jax.device_get(metrics).items() if k.startswith('loss')}
    raise NonFiniteLossError(
        f'loss is {loss} at step {step} (terms {terms}); stopping before any checkpoint '
        'of this state is written. Lower config.learning_rate or check the data.')


def params_digest(params: state_lib.Params) -> str:
  """sha256 of this host's copy of the replicated parameters (leaves in tree order).

  Replicated weights must be bit-identical on every host; one that drifted would
  silently train another model, so hosts compare digests at the end of a run.
  """
  digest = hashlib.sha256()
  for leaf in jax.tree.leaves(params):
    digest.update(np.ascontiguousarray(leaf.addressable_data(0)).tobytes())
  return digest.hexdigest()


def _restore_or_init(config, ckpt: checkpoints.Checkpointer, mesh,
                     init_from: WarmStart | None = None) -> tuple[state_lib.TrainState, int]:
  rep = sharding.replicated(mesh)
  abstract = jax.eval_shape(lambda: state_lib.init_state(config))
  if ckpt.latest_step() is None:
    state = state_lib.create_state(config, mesh)
    if init_from is not None:  # fresh optimiser and schedule, the given weights
      params, where = init_from()
      # Parts the source lacks (a new uncertainty head) keep this run's initialisation.
      params = {**state.params, **jax.device_put(params, rep)}
      # A copy, not an alias: the train step donates params and EMA params, and XLA
      # refuses one buffer donated twice.
      state = state.replace(
          params=params,
          ema_params=None if state.ema_params is None else jax.tree.map(jnp.copy, params))
      logging.info('Warm start from %s.', where)
    return state, 0
  abstract = jax.tree.map(
      lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=rep), abstract)
  # The saved config is compared first: restoring another network's arrays into
  # this one's shapes would fail deep inside orbax with a traceback.
  meta = ckpt.read_meta(ckpt.latest_step())
  saved = ml_collections.ConfigDict(json.loads(meta['config']))
  for field in ('scale', 'num_neighbors'):
    if saved[field] != config[field]:
      raise errors.ConfigError(
          f'config.{field}: {config[field]} differs from {saved[field]} in the checkpoint '
          f'under {ckpt.directory}; use a new --workdir')
  for field in ('variant', 'uncertainty'):
    had, has = saved.model.get(field, False), config.model.get(field, False)
    if had != has:
      raise errors.ConfigError(
          f'config.model.{field}: {has} differs from {had} in the checkpoint under '
          f'{ckpt.directory}; use a new --workdir')
  had, has = saved.get('ema_decay', 0.0) > 0, config.ema_decay > 0
  if had != has:  # the checkpoint holds an EMA copy, or not: the state's very shape
    raise errors.ConfigError(
        f'config.ema_decay: {config.ema_decay} {"keeps" if has else "turns off"} the EMA '
        f'copy of the parameters, unlike the checkpoint under {ckpt.directory} (ema_decay '
        f'{saved.get("ema_decay", 0.0)}); use a new --workdir')
  state, meta = ckpt.restore(abstract)
  step = int(meta['step'])
  logging.info('Resumed from %s at step %d (data stream at example %d).',
               ckpt.directory, step, meta['data_stream']['next_example_index'])
  return state, step


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str,
                       init_from: WarmStart | None = None) -> state_lib.TrainState:
  """Trains (resuming from `workdir` when it holds a checkpoint) and evaluates.

  A fresh run starts from `init_from()`'s weights when given (config.init_from,
  read by inference/warm_start.py: bundles are read above this layer).
  """
  config_lib.check_fields(config)
  epath.Path(workdir, 'samples').mkdir(parents=True, exist_ok=True)  # local or gs://
  is_chief = jax.process_index() == 0
  writer, report = writers.create(workdir, is_chief=is_chief,
                                  num_train_steps=config.num_train_steps,
                                  every_steps=config.log_every_steps)
  mesh = sharding.make_mesh(config.mesh.space)
  logging.info('Mesh %s over %d devices on %d hosts.', dict(mesh.shape), jax.device_count(),
               jax.process_count())

  graphdef = state_lib.model_graphdef(config)
  ckpt = checkpoints.Checkpointer(workdir, config)
  # Closed on any error too: its save threads would otherwise keep the process alive
  # after the error is printed.
  try:
    state, start_step = _restore_or_init(config, ckpt, mesh, init_from)
    n_params = sum(x.size for x in jax.tree.leaves(state.params))
    logging.info('ClarityNetSR %s: %.3fM parameters, scale %d, K=%d.', config.model.variant,
                 n_params / 1e6, config.scale, config.num_neighbors)
    if start_step == 0:
      writer.write_hparams({k: v for k, v in _flat(config).items()})

    if start_step >= config.num_train_steps:
      _announce(f'already trained to step {start_step}; nothing to do')
      step, means = start_step, None
    else:
      if start_step:
        _announce(f'resumed from step {start_step}')
      state, step, means = _train_steps(config, workdir, mesh, graphdef, ckpt, writer,
                                        report, state, start_step)
  except BaseException:
    ckpt.close()
    raise
  ckpt.close()
  writer.flush()
  digest = params_digest(state.params)
  logging.info('Process %d ends at step %d with parameters sha256 %s.', jax.process_index(),
               step, digest)
  if jax.process_count() > 1:
    multihost_utils.assert_equal(np.frombuffer(bytes.fromhex(digest), np.uint8),
                                 'parameters differ between hosts')
  if means is not None and is_chief:
    print(f'validation after {step} steps: PSNR {means["psnr"]:.2f} dB vs bicubic '
          f'{means["bicubic_psnr"]:.2f} dB; SSIM {means["ssim"]:.4f} vs bicubic '
          f'{means["bicubic_ssim"]:.4f}', flush=True)
  return state


def _train_steps(config: ml_collections.ConfigDict, workdir: str, mesh, graphdef,
                 ckpt: checkpoints.Checkpointer, writer, report, state: state_lib.TrainState,
                 start_step: int
                 ) -> tuple[state_lib.TrainState, int, dict[str, float] | None]:
  """Steps start_step+1 .. config.num_train_steps (or to a preemption), with the
  metrics, validation, samples and checkpoints on the way; returns the state, the
  last step and its validation means (None without a validation)."""
  is_chief = jax.process_index() == 0
  perceptual, vgg_params = make_perceptual(config)
  if vgg_params is not None:
    vgg_params = jax.device_put(vgg_params, sharding.replicated(mesh))
  train_fn = ts.jit_train_step(feed.step_config(config), graphdef, mesh, perceptual)
  eval_fn = ts.jit_eval_step(config, graphdef, mesh)
  eval_batches = list(data.create_eval_iterator(config))
  train_batches = feed.batches(config, mesh, data.create_train_iterator(
      config, start_step=start_step))

  def save(step: int, metrics: dict[str, Any] | None) -> None:
    if metrics is not None:
      _check_finite(metrics, step)
    ckpt.save(step, state, {
        'step': step,
        'data_stream': {'seed': config.seed, 'batches_consumed': step,
                        'next_example_index': step * config.batch_size},
        'config': config.to_json(),
    })

  def run_eval(step: int) -> dict[str, float]:
    means, picture = validation_scores(eval_fn, state.eval_params, mesh, eval_batches)
    writer.write_scalars(step, {f'val/{k}': v for k, v in means.items()})
    _announce(f"step {step}: validation PSNR {means['psnr']:.2f} dB (bicubic "
              f"{means['bicubic_psnr']:.2f} dB), SSIM {means['ssim']:.4f} (bicubic "
              f"{means['bicubic_ssim']:.4f})")
    if picture is not None and is_chief:
      grid = _sample_grid(*picture, n=config.num_sample_images)
      writer.write_images(step, {'val/bicubic_output_gt': grid[None]})
      frames.write_image(os.path.join(workdir, 'samples', f'step_{step:07d}.png'), grid)
    return means

  progress = tqdm.tqdm(total=config.num_train_steps, initial=start_step, disable=not is_chief,
                       desc='train', unit='step', dynamic_ncols=True, mininterval=2.0)
  pending: list[dict[str, jax.Array]] = []
  previous = None
  last_log = time.perf_counter()
  step = start_step
  means = None
  try:
    while step < config.num_train_steps:
      batch = next(train_batches)
      # The batch is placed explicitly (feed.py); any other host<->device copy in
      # the step would be a hidden one that stalls the accelerator: refuse it.
      with jax.transfer_guard('disallow'):
        state, metrics = train_fn(state, batch, vgg_params)
      step += 1
      # Check the previous step's loss while this one runs: no pipeline stall.
      if previous is not None:
        _check_finite(previous, step - 1)
      previous = metrics
      pending.append(metrics)
      report(step)
      progress.update(1)

      if step % config.log_every_steps == 0 or step == config.num_train_steps:
        summary = {f'train/{k}': float(np.mean(v))
                   for k, v in jax.tree.map(lambda *x: np.stack(x),
                                            *jax.device_get(pending)).items()}
        now = time.perf_counter()
        summary['train/windows_per_sec'] = len(pending) * config.batch_size / (now - last_log)
        last_log = now
        pending = []
        writer.write_scalars(step, summary)
        progress.set_postfix(loss=f"{summary['train/loss']:.4f}")
      if step % config.eval_every_steps == 0 or step == config.num_train_steps:
        means = run_eval(step)
      preempted = ckpt.should_stop_for_preemption(step)
      if (step % config.checkpoint_every_steps == 0 or step == config.num_train_steps
          or preempted):
        save(step, metrics)
      if preempted:
        logging.warning('Stopped for preemption at step %d; re-run the same command to resume.',
                        step)
        break
  finally:  # an error starts on a line of its own, not glued to the bar
    progress.close()
    train_batches.close()
  return state, step, means


def _flat(config: ml_collections.ConfigDict, prefix: str = '') -> dict[str, Any]:
  """Config as flat scalar hparams for TensorBoard."""
  out = {}
  for key, value in config.items():
    if isinstance(value, ml_collections.ConfigDict):
      out.update(_flat(value, f'{prefix}{key}.'))
    elif isinstance(value, (int, float, str, bool)):
      out[f'{prefix}{key}'] = value
  return out
