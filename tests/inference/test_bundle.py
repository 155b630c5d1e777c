"""Inference bundles: layout, exact round trip, integrity checks, atomic writes."""

import hashlib
import json
import os
import pathlib
import re

import jax
import numpy as np
import pytest
import safetensors.numpy
from flax import nnx

from clarity_jax.inference import bundle


@pytest.fixture(scope='module')
def fresh(random_params):
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


def test_loaded_model_computes_what_the_saved_one_did(fresh, saved, forward):
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
