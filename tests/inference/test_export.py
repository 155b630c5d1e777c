"""Export: checkpoint -> bundle exactly (EMA weights first), the command's errors, and
the jax2tf SavedModel checked against JAX."""

import json
import os
import shutil
import pathlib
import subprocess
import sys

import jax
import numpy as np
import orbax.checkpoint as ocp
import pytest
import safetensors.numpy

from clarity_jax.inference import bundle
from clarity_jax.inference import export
from clarity_jax.train import loop
from clarity_jax.train import state as train_state
from clarity_jax.train import step as step_lib


@pytest.fixture(scope='module')
def run_export(repo):
  """run_export(*flags) -> the finished `python -m clarity_jax.export` process."""
  env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL='2')
  env['PYTHONPATH'] = os.pathsep.join([str(repo), env.get('PYTHONPATH', '')])

  def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, '-m', 'clarity_jax.export', *args], cwd=repo,
                          env=env, capture_output=True, text=True, timeout=300)
  return run


@pytest.fixture(scope='module')
def trained_run(tmp_path_factory, tiny_config):
  """A 4-step tiny run that keeps an EMA copy (so 'EMA when present' is testable)."""
  workdir = tmp_path_factory.mktemp('run') / 'w'
  config = tiny_config(ema_decay=0.9)
  loop.train_and_evaluate(config, str(workdir))
  return workdir, config


def checkpoint_state(workdir: pathlib.Path) -> tuple[int, dict]:
  """The latest checkpoint read back with plain orbax, no clarity_jax code involved."""
  with ocp.CheckpointManager(workdir / 'checkpoints') as manager:
    step = manager.latest_step()
    restored = manager.restore(step, args=ocp.args.Composite(state=ocp.args.StandardRestore()))
  return step, restored.state


def test_export_cli_round_trip_matches_the_checkpoint_model(trained_run, run_export, repo,
                                                            forward, tmp_path):
  workdir, config = trained_run
  out = tmp_path / 'bundle'
  # A relative --workdir, as users type it (orbax itself wants absolute paths).
  relative = os.path.relpath(workdir, repo)
  proc = run_export(f'--workdir={relative}', f'--output={out}')
  assert proc.returncode == 0, proc.stderr[-3000:]
  assert 'ema weights' in proc.stdout

  step, state = checkpoint_state(workdir)
  model, info = bundle.load_bundle(out)
  assert (info.step, info.weights) == (step, 'ema') and step == config.num_train_steps
  assert info.model == bundle.ModelSpec('tiny', config.scale, config.num_neighbors,
                                        warp_features=True)

  # The same window through the training code's model with the checkpoint's EMA
  # parameters, and through the bundle's model: identical outputs.
  window = np.random.default_rng(0).random((2, 3, 20, 28, 3), np.float32)
  graphdef = train_state.model_graphdef(config)
  ema = jax.tree.map(np.asarray, state['ema_params'])
  raw = jax.tree.map(np.asarray, state['params'])
  apply = jax.jit(lambda p, x: step_lib.apply_model(graphdef, p, x))
  want = np.asarray(apply(_int_keys(ema, config), window))
  got = forward(model, window)
  assert got.shape == (2, 4 * 20, 4 * 28, 3)
  np.testing.assert_array_equal(got, want)
  # ... and not the raw weights' output: the EMA copy was the one exported.
  other = np.asarray(apply(_int_keys(raw, config), window))
  assert np.max(np.abs(other - got)) > 1e-6


def _int_keys(params: dict, config) -> dict:
  """orbax hands back list indices as '0'; nnx.merge wants the model's own keys."""
  like = jax.eval_shape(lambda: train_state.init_state(config)).params
  flat = bundle.flatten_params(params)
  return bundle.unflatten_params(flat, like)


def test_export_cli_shards_under_max_file_mib(trained_run, run_export, tmp_path):
  """--max_file_mib: files of at most that size holding exactly the arrays of the
  single-file export; the printed sha256 is the bundle's."""
  workdir, _ = trained_run
  out, limit = tmp_path / 'sharded', int(0.03 * 2**20)
  proc = run_export(f'--workdir={workdir}', f'--output={out}', '--max_file_mib=0.03')
  assert proc.returncode == 0, proc.stderr[-3000:]
  names = sorted(p for p in os.listdir(out) if p.endswith('.safetensors'))
  assert len(names) >= 3 and names[0] == f'params-00001-of-{len(names):05d}.safetensors'
  assert all(os.path.getsize(out / name) <= limit for name in names)
  _, params, info = bundle.load_params(out)
  assert proc.stdout.strip().endswith(f'sha256 {info.params_sha256[:12]}, '
                                      f'{len(names)} files')
  single = export.export(workdir, tmp_path / 'single')
  assert (info.step, info.weights, info.model) == (single.step, single.weights, single.model)
  want = safetensors.numpy.load_file(tmp_path / 'single' / 'params.safetensors')
  got = bundle.flatten_params(params)
  assert got.keys() == want.keys()
  for key, array in got.items():
    np.testing.assert_array_equal(array, want[key])


def test_export_refuses_a_workdir_without_checkpoints(run_export, tmp_path):
  out = tmp_path / 'bundle'
  proc = run_export(f'--workdir={tmp_path}', f'--output={out}')
  assert proc.returncode == 1
  assert proc.stderr.strip().splitlines()[-1] == (
      f'error: {tmp_path}: no checkpoints/ folder (not a training workdir?)')
  assert not out.exists()


def test_export_keeps_what_exists_and_names_a_missing_step(trained_run, run_export, tmp_path):
  """An existing bundle is replaced only with --overwrite; a missing step is named,
  with the steps there are; a checkpoint without state/ is one line too."""
  workdir, config = trained_run
  out = tmp_path / 'bundle'
  assert run_export(f'--workdir={workdir}', f'--output={out}').returncode == 0
  stamp = (out / 'bundle.json').stat().st_mtime_ns
  proc = run_export(f'--workdir={workdir}', f'--output={out}')
  assert proc.returncode == 1
  assert proc.stderr.strip().splitlines()[-1] == (
      f'error: {out}: already exists; choose a new --output or pass --overwrite to replace '
      'an earlier bundle')
  assert (out / 'bundle.json').stat().st_mtime_ns == stamp
  assert run_export(f'--workdir={workdir}', f'--output={out}', '--overwrite').returncode == 0
  proc = run_export(f'--workdir={workdir}', f'--output={tmp_path / "b2"}', '--step=999')
  assert proc.returncode == 1
  last = proc.stderr.strip().splitlines()[-1]
  assert last.startswith(f'error: {workdir / "checkpoints"}: no checkpoint of step 999 '
                         '(saved steps: ') and str(config.num_train_steps) in last
  broken = tmp_path / 'broken'
  shutil.copytree(workdir, broken)
  shutil.rmtree(broken / 'checkpoints' / str(config.num_train_steps) / 'state')
  proc = run_export(f'--workdir={broken}', f'--output={tmp_path / "b3"}')
  assert proc.returncode == 1
  assert proc.stderr.strip().splitlines()[-1] == (
      f'error: {broken / "checkpoints" / str(config.num_train_steps) / "state"}: missing: '
      'the checkpoint is incomplete')
  assert not (tmp_path / 'b2').exists() and not (tmp_path / 'b3').exists()


def test_export_names_the_checkpoint_whose_config_this_code_cannot_build(
    trained_run, run_export, tmp_path):
  workdir, config = trained_run
  odd = tmp_path / 'odd'
  shutil.copytree(workdir, odd)
  step_dir = odd / 'checkpoints' / str(config.num_train_steps)
  record = json.loads((step_dir / 'meta' / 'metadata').read_text())
  saved = json.loads(record['config'])
  saved['model']['variant'] = 'huge'
  record['config'] = json.dumps(saved)
  (step_dir / 'meta' / 'metadata').write_text(json.dumps(record))
  proc = run_export(f'--workdir={odd}', f'--output={tmp_path / "bundle"}')
  assert proc.returncode == 1
  assert proc.stderr.strip().splitlines() == [
      f"error: {step_dir}: saved config.model.variant: unknown variant 'huge'; choose from "
      "['base', 'small', 'tiny']"]
  assert not (tmp_path / 'bundle').exists()


def test_saved_model_agrees_with_jax(trained_run, forward, tmp_path):
  """--format=saved_model: one jax2tf SavedModel for every multiple of its size multiple,
  checked against the JAX model at two sizes (TF imported here)."""
  tf = pytest.importorskip('tensorflow')
  workdir, config = trained_run
  out = tmp_path / 'bundle'
  info = export.export(workdir, out, formats=['saved_model'])
  saved = info.extra['saved_model']
  m = saved['size_multiple']
  assert saved['checked_max_abs_diff'] < 1e-4 and m == 4  # tiny: a 2-level flow pyramid
  assert saved['input_shape'] == [None, 3, None, None, 3]
  model, _ = bundle.load_bundle(out)
  restore = tf.saved_model.load(str(out / 'saved_model')).signatures['serving_default']
  rng = np.random.default_rng(5)
  for batch, h, w in ((3, 4 * m, 4 * m), (1, 2 * m, 7 * m)):
    window = rng.random((batch, 3, h, w, 3), np.float32)
    got = next(iter(restore(lq=tf.constant(window)).values())).numpy()
    assert got.shape == (batch, config.scale * h, config.scale * w, 3)
    np.testing.assert_allclose(got, forward(model, window), atol=1e-4)
  with pytest.raises(tf.errors.InvalidArgumentError, match=f'multiples of {m}'):
    restore(lq=tf.constant(rng.random((1, 3, 2 * m + 1, 2 * m, 3), np.float32)))
