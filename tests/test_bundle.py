"""Inference bundles: exact round trip from a trained run, integrity checks, export CLI."""

import hashlib
import json
import os
import pathlib
import re
import subprocess
import sys

import jax
import numpy as np
import orbax.checkpoint as ocp
import pytest
import safetensors.numpy
from flax import nnx

from clarity_jax.inference import bundle
from clarity_jax.inference import export
from clarity_jax.train import loop as train
from clarity_jax.train import step as ts
from conftest import REPO, tiny_config
from test_enhance import random_params


def _env():
  env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL='2')
  env['PYTHONPATH'] = os.pathsep.join([str(REPO), env.get('PYTHONPATH', '')])
  return env


def run_module(module: str, *args: str) -> subprocess.CompletedProcess:
  return subprocess.run([sys.executable, '-m', module, *args], cwd=REPO, env=_env(),
                        capture_output=True, text=True, timeout=300)


@pytest.fixture(scope='module')
def trained_run(tmp_path_factory):
  """A 4-step tiny run that keeps an EMA copy (so 'EMA when present' is testable)."""
  workdir = tmp_path_factory.mktemp('run') / 'w'
  config = tiny_config(ema_decay=0.9)
  train.train_and_evaluate(config, str(workdir))
  return workdir, config


def checkpoint_state(workdir: pathlib.Path) -> tuple[int, dict]:
  """The latest checkpoint read back with plain orbax, no clarity_jax code involved."""
  with ocp.CheckpointManager(workdir / 'checkpoints') as manager:
    step = manager.latest_step()
    restored = manager.restore(step, args=ocp.args.Composite(state=ocp.args.StandardRestore()))
  return step, restored.state


def test_export_cli_round_trip_matches_the_checkpoint_model(trained_run, tmp_path):
  workdir, config = trained_run
  out = tmp_path / 'bundle'
  # A relative --workdir, as users type it (orbax itself wants absolute paths).
  relative = os.path.relpath(workdir, REPO)
  proc = run_module('clarity_jax.export', f'--workdir={relative}', f'--output={out}')
  assert proc.returncode == 0, proc.stderr[-3000:]
  assert 'ema weights' in proc.stdout

  step, state = checkpoint_state(workdir)
  model, info = bundle.load_bundle(out)
  assert (info.step, info.weights) == (step, 'ema') and step == config.num_train_steps
  assert info.model == bundle.ModelSpec('tiny', config.scale, config.num_neighbors)

  # The same window through the training code's model with the checkpoint's EMA
  # parameters, and through the bundle's model: identical outputs.
  window = np.random.default_rng(0).random((2, 3, 20, 28, 3), np.float32)
  graphdef = ts.model_graphdef(config)
  ema = jax.tree.map(np.asarray, state['ema_params'])
  raw = jax.tree.map(np.asarray, state['params'])
  apply = jax.jit(lambda p, x: ts.apply_model(graphdef, p, x))
  want = np.asarray(apply(_int_keys(ema, config), window))
  got = forward(model, window)
  assert got.shape == (2, 4 * 20, 4 * 28, 3)
  np.testing.assert_array_equal(got, want)
  # ... and not the raw weights' output: the EMA copy was the one exported.
  other = np.asarray(apply(_int_keys(raw, config), window))
  assert np.max(np.abs(other - got)) > 1e-6


def _int_keys(params: dict, config) -> dict:
  """orbax hands back list indices as '0'; nnx.merge wants the model's own keys."""
  like = jax.eval_shape(lambda: ts.init_state(config)).params
  flat = bundle.flatten_params(params)
  return bundle.unflatten_params(flat, like)


def test_export_refuses_a_workdir_without_checkpoints(tmp_path):
  out = tmp_path / 'bundle'
  proc = run_module('clarity_jax.export', f'--workdir={tmp_path}', f'--output={out}')
  assert proc.returncode == 1
  assert proc.stderr.strip().splitlines()[-1] == (
      f'error: {tmp_path}: no checkpoints/ folder (not a training workdir?)')
  assert not out.exists()


@pytest.fixture(scope='module')
def fresh():
  """A randomly initialised tiny model (K=1, x2): its spec, graph and parameters."""
  spec = bundle.ModelSpec('tiny', scale=2, num_neighbors=1)
  graphdef, params = random_params(spec, seed=3)
  return spec, graphdef, params


@pytest.fixture
def saved(fresh, tmp_path):
  """That model saved as a bundle."""
  spec, _, params = fresh
  path = tmp_path / 'b'
  info = bundle.save_bundle(path, spec, params, step=123)
  return path, spec, params, info


def test_bundle_layout_and_json(saved):
  path, spec, params, info = saved
  assert sorted(os.listdir(path)) == ['bundle.json', 'params.safetensors']
  raw = json.loads((path / 'bundle.json').read_text())
  assert raw['format'] == 'clarity_jax.bundle' and raw['format_version'] == 1
  assert raw['model'] == {'variant': 'tiny', 'scale': 2, 'num_neighbors': 1,
                          'use_alignment': True, 'use_attention': True}
  assert raw['input']['range'] == [0.0, 1.0] and raw['input']['color'] == 'RGB'
  assert raw['training'] == {'step': 123, 'weights': 'raw'}
  digest = hashlib.sha256((path / 'params.safetensors').read_bytes()).hexdigest()
  assert raw['params']['sha256'] == digest == info.params_sha256
  # Flat 'a/b/c' keys holding exactly the model's arrays.
  flat = safetensors.numpy.load_file(path / 'params.safetensors')
  leaves = jax.tree_util.tree_flatten_with_path(params)[0]
  assert len(flat) == len(leaves) == raw['params']['arrays']
  assert 'decoder/blocks/0/conv1/kernel' in flat
  for key_path, leaf in leaves:
    key = '/'.join(str(getattr(k, 'key', k)) for k in key_path)
    np.testing.assert_array_equal(flat[key], np.asarray(leaf))


@jax.jit(static_argnums=0)
def _forward(graphdef, state, window):
  return nnx.merge(graphdef, state)(window)


def forward(model: nnx.Module, window: np.ndarray) -> np.ndarray:
  """The model's forward pass, jitted (eager NNX runs op by op: slow on 2 cores)."""
  return np.asarray(_forward(*nnx.split(model), window))


def test_loaded_model_computes_what_the_saved_one_did(fresh, saved):
  _, graphdef, params = fresh
  path = saved[0]
  window = np.random.default_rng(1).random((1, 3, 12, 16, 3), np.float32)
  want = forward(nnx.merge(graphdef, params), window)
  model, _ = bundle.load_bundle(path)
  np.testing.assert_array_equal(forward(model, window), want)
  # bfloat16 computation: same parameters, an approximation of the output.
  model16, _ = bundle.load_bundle(path, dtype='bfloat16')
  assert 0 < np.max(np.abs(forward(model16, window) - want)) < 0.1


def _edit_json(path: pathlib.Path, **changes) -> None:
  raw = json.loads((path / 'bundle.json').read_text())
  raw.update(changes)
  (path / 'bundle.json').write_text(json.dumps(raw))


@pytest.mark.parametrize('damage,message', [
    (lambda p: _edit_json(p, format='keras.savedmodel'),
     "bundle.json: format 'keras.savedmodel' is not 'clarity_jax.bundle'"),
    (lambda p: _edit_json(p, format_version=2),
     'bundle.json: format_version 2 is not supported'),
    (lambda p: (p / 'bundle.json').write_text('{"format": '),
     'bundle.json: not readable JSON'),
    (lambda p: (p / 'bundle.json').unlink(), 'no bundle.json: not a clarity_jax bundle'),
    (lambda p: (p / 'params.safetensors').unlink(),
     'params.safetensors: missing'),
    (lambda p: _flip_last_byte(p / 'params.safetensors'),
     r'params.safetensors: sha256 [0-9a-f]{12}\.\.\. does not match'),
    (lambda p: _edit_json(p, model={'variant': 'tiny', 'scale': 4, 'num_neighbors': 1,
                                    'use_alignment': True, 'use_attention': True}),
     r"params.safetensors: parameter 'decoder/conv_out/bias' is float32\[12\], model tiny "
     r'x4 K=1 expects float32\[48\]'),
    (lambda p: _edit_json(p, model={'variant': 'huge', 'scale': 2, 'num_neighbors': 1,
                                    'use_alignment': True, 'use_attention': True}),
     "bundle.json: ClarityNetSR: unknown variant 'huge'"),
])
def test_bad_bundles_are_one_line_errors_naming_the_file(saved, damage, message):
  path = saved[0]
  damage(path)
  with pytest.raises(bundle.BundleError) as e:
    bundle.load_bundle(path)
  text = str(e.value)
  assert '\n' not in text and text.startswith(str(path))
  assert re.search(message, text), text


def _flip_last_byte(path: pathlib.Path) -> None:
  data = bytearray(path.read_bytes())
  data[-1] ^= 0xFF
  path.write_bytes(bytes(data))


def test_missing_bundle_folder(tmp_path):
  with pytest.raises(bundle.BundleError, match=f'^{tmp_path / "nope"}: no such bundle folder'):
    bundle.load_bundle(tmp_path / 'nope')


def test_save_is_atomic_and_checks_the_parameters(saved, tmp_path):
  path, spec, params, _ = saved

  def failing_extras(tmp):
    (tmp / 'partial.bin').write_bytes(b'x')
    raise RuntimeError('disk full')

  target = tmp_path / 'new'
  with pytest.raises(RuntimeError, match='disk full'):
    bundle.save_bundle(target, spec, params, step=1, extras=failing_extras)
  assert not target.exists()
  assert not [p for p in os.listdir(tmp_path) if p.startswith('.')]
  # Parameters of another model are refused before anything is written.
  other = nnx.to_pure_dict(nnx.state(nnx.eval_shape(bundle.ModelSpec('tiny', 4, 1).create)))
  other = jax.tree.map(lambda x: np.zeros(x.shape, x.dtype), other)
  with pytest.raises(bundle.BundleError, match='parameter .* expects'):
    bundle.save_bundle(target, spec, other, step=1)
  assert not target.exists()
  # An existing bundle is replaced whole; any other folder is left alone.
  info = bundle.save_bundle(path, spec, jax.tree.map(lambda x: x * 2, params), step=7)
  assert bundle.read_info(path) == info and info.step == 7
  (tmp_path / 'docs').mkdir()
  (tmp_path / 'docs' / 'a.txt').write_text('mine')
  with pytest.raises(bundle.BundleError, match='exists and is not a bundle'):
    bundle.save_bundle(tmp_path / 'docs', spec, params, step=1)
  assert (tmp_path / 'docs' / 'a.txt').read_text() == 'mine'


def test_saved_model_agrees_with_jax(trained_run, tmp_path):
  """--saved_model: one jax2tf SavedModel for every multiple of its size multiple,
  checked against the JAX model at two sizes (TF imported here)."""
  tf = pytest.importorskip('tensorflow')
  workdir, config = trained_run
  out = tmp_path / 'bundle'
  info = export.export(workdir, out, saved_model=True)
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
