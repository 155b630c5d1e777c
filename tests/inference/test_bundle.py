"""Inference bundles: layout, exact round trip, integrity checks, atomic writes,
parameters sharded over size-capped files."""

import hashlib
import json
import os
import pathlib
import re
import shutil
import struct

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
                          'use_alignment': True, 'use_attention': True,
                          'uncertainty': False, 'warp_features': False}
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
  # The file safetensors itself writes for these arrays and the version-1 metadata,
  # byte for byte (one metadata key: the order of several changes from call to call).
  want = safetensors.numpy.save(flat, metadata={'format': 'clarity_jax.bundle/1'})
  assert (path / 'params.safetensors').read_bytes() == want


def _parse_safetensors(data: bytes) -> tuple[dict, bytes]:
  """(header, raw arrays) of a safetensors file: 8-byte length, JSON, data."""
  n = struct.unpack('<Q', data[:8])[0]
  return json.loads(data[8:8 + n]), data[8 + n:]


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


def _assert_one_line_error(path: pathlib.Path, damage, message: str) -> None:
  """Damaging the bundle at `path` makes loading it one line naming a file under it."""
  damage(path)
  with pytest.raises(bundle.BundleError) as e:
    bundle.load_bundle(path)
  text = str(e.value)
  assert '\n' not in text and text.startswith(str(path))
  assert re.search(message, text), text


@pytest.mark.parametrize('damage,message', [
    (lambda p: _edit_json(p, format='keras.savedmodel'),
     "bundle.json: format 'keras.savedmodel' is not 'clarity_jax.bundle'"),
    (lambda p: _edit_json(p, format_version=3),
     'bundle.json: format_version 3 is not supported'),
    # Version 2 is the sharded layout, which this bundle's 'params' is not.
    (lambda p: _edit_json(p, format_version=2),
     "bundle.json: missing or malformed field .*'files'"),
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
     r"bundle.json: model.variant is 'huge'; expected one of \['base', 'small', 'tiny'\]$"),
    (lambda p: _edit_json(p, model={'variant': 'tiny', 'scale': 2, 'num_neighbors': 100000,
                                    'use_alignment': True, 'use_attention': True}),
     r'bundle.json: model.num_neighbors is 100000; expected one of \[0, 1, 2'),
    (lambda p: _edit_json(p, model={'variant': 'tiny', 'scale': 2, 'num_neighbors': 1,
                                    'use_alignment': 'false', 'use_attention': True}),
     "bundle.json: model.use_alignment is 'false', not a JSON bool"),
    (lambda p: _edit_json(p, model={'variant': 'tiny', 'scale': True, 'num_neighbors': 1,
                                    'use_alignment': True, 'use_attention': True}),
     'bundle.json: model.scale is True, not a JSON int'),
])
def test_bad_bundles_are_one_line_errors_naming_the_file(saved, damage, message):
  _assert_one_line_error(saved[0], damage, message)


def _flip_last_byte(path: pathlib.Path) -> None:
  data = bytearray(path.read_bytes())
  data[-1] ^= 0xFF
  path.write_bytes(bytes(data))


def test_missing_bundle_folder(tmp_path):
  with pytest.raises(bundle.BundleError, match=f'^{tmp_path / "nope"}: no such bundle folder'):
    bundle.load_bundle(tmp_path / 'nope')


def test_the_same_parameters_save_to_the_same_bytes(saved, tmp_path):
  """A bundle saved again has the same params sha256 (what exported graphs name)."""
  path, spec, params, info = saved
  for i in range(8):
    again = bundle.save_bundle(tmp_path / f'again{i}', spec, params, step=123)
    assert again.params_sha256 == info.params_sha256
  assert hashlib.sha256((path / bundle.PARAMS_FILE).read_bytes()).hexdigest() == info.params_sha256


def test_save_is_atomic_and_checks_the_parameters(saved, tmp_path):
  path, spec, params, _ = saved

  def failing_extras(tmp, digest):
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


def test_a_version_1_bundle_written_without_clarity_jax_loads(fresh, tmp_path, forward):
  """The layout bundles have had since the first export, written here by hand."""
  spec, graphdef, params = fresh
  path = tmp_path / 'old'
  path.mkdir()
  flat = bundle.flatten_params(params)
  safetensors.numpy.save_file(flat, path / 'params.safetensors', metadata={
      'format': 'clarity_jax.bundle', 'format_version': '1'})
  digest = hashlib.sha256((path / 'params.safetensors').read_bytes()).hexdigest()
  (path / 'bundle.json').write_text(json.dumps({
      'format': 'clarity_jax.bundle', 'format_version': 1,
      'model': {'variant': 'tiny', 'scale': 2, 'num_neighbors': 1, 'use_alignment': True,
                'use_attention': True},
      'input': {}, 'training': {'step': 9, 'weights': 'ema'},
      'params': {'file': 'params.safetensors', 'sha256': digest, 'arrays': len(flat)},
      'package_version': '0.0.1'}))
  model, info = bundle.load_bundle(path)
  assert (info.model, info.step, info.weights, info.params_sha256) == (spec, 9, 'ema', digest)
  window = np.random.default_rng(1).random((1, 3, 12, 16, 3), np.float32)
  np.testing.assert_array_equal(forward(model, window),
                                forward(nnx.merge(graphdef, params), window))


# Forces 3 or more files on the tiny x2 model (69 508 bytes of arrays, at most 9 216 each).
LIMIT = 24_000


@pytest.fixture
def sharded(fresh, tmp_path):
  """The fresh model saved with files of at most LIMIT bytes."""
  spec, _, params = fresh
  path = tmp_path / 'sharded'
  info = bundle.save_bundle(path, spec, params, step=123, max_file_bytes=LIMIT)
  return path, info


def _shards(path: pathlib.Path) -> list[str]:
  return sorted(p for p in os.listdir(path) if p.startswith('params'))


def test_sharded_round_trip_equals_the_single_file_bundle(fresh, saved, sharded, forward):
  spec, graphdef, params = fresh
  path, info = sharded
  names = _shards(path)
  n = len(names)
  assert n >= 3 and names == [f'params-{i:05d}-of-{n:05d}.safetensors' for i in range(1, n + 1)]
  assert sorted(os.listdir(path)) == ['bundle.json', *names]
  assert all(os.path.getsize(path / name) <= LIMIT for name in names)
  # Sorted keys, each in exactly one file, in file order; each file as listed.
  raw = json.loads((path / 'bundle.json').read_text())
  assert raw['format_version'] == 2 and raw['model'] == json.loads(
      (saved[0] / 'bundle.json').read_text())['model']
  keys, digests = [], []
  for name, listed in zip(names, raw['params']['files'], strict=True):
    data = (path / name).read_bytes()
    digests.append(hashlib.sha256(data).hexdigest())
    header, _ = _parse_safetensors(data)
    assert header.pop('__metadata__') == {'format': 'clarity_jax.bundle/2'}
    assert listed == {'file': name, 'sha256': digests[-1], 'arrays': len(header)}
    keys += sorted(header)
  single = safetensors.numpy.load_file(saved[0] / 'params.safetensors')
  assert keys == sorted(single) and raw['params']['arrays'] == len(keys)
  # params_sha256: the sha256 of the files' hex digests, concatenated in order.
  combined = hashlib.sha256(''.join(digests).encode()).hexdigest()
  assert info.params_sha256 == combined and bundle.read_info(path) == info
  assert info.params_sha256 != saved[3].params_sha256
  # The same arrays, and the same restorations, as the single-file bundle.
  _, loaded, _ = bundle.load_params(path)
  assert bundle.flatten_params(loaded).keys() == single.keys()
  for key, array in bundle.flatten_params(loaded).items():
    np.testing.assert_array_equal(array, single[key])
  window = np.random.default_rng(1).random((1, 3, 12, 16, 3), np.float32)
  np.testing.assert_array_equal(forward(bundle.load_bundle(path)[0], window),
                                forward(bundle.load_bundle(saved[0])[0], window))
  # A limit that the whole fits under keeps the single-file (version 1) layout.
  info = bundle.save_bundle(path, spec, params, step=123, max_file_bytes=1 << 20)
  assert sorted(os.listdir(path)) == ['bundle.json', 'params.safetensors']
  assert info.params_sha256 == hashlib.sha256(
      (path / 'params.safetensors').read_bytes()).hexdigest()


def _edit_listing(path: pathlib.Path, index: int, **changes) -> None:
  raw = json.loads((path / 'bundle.json').read_text())
  raw['params']['files'][index].update(changes)
  (path / 'bundle.json').write_text(json.dumps(raw))


@pytest.mark.parametrize('damage,message', [
    (lambda p: _flip_last_byte(p / _shards(p)[1]),
     r'/params-00002-of-0000\d\.safetensors: sha256 [0-9a-f]{12}\.\.\. does not match '
     r'[0-9a-f]{12}\.\.\. in bundle.json: corrupt or altered$'),
    (lambda p: (p / _shards(p)[-1]).unlink(),
     r'/params-0000(\d)-of-0000\1\.safetensors: missing \(the bundle is incomplete\)$'),
    (lambda p: shutil.copy(p / _shards(p)[0], p / 'params-00001-of-00009.safetensors'),
     r'/params-00001-of-00009\.safetensors: not listed in bundle.json'),
    (lambda p: shutil.copy(p / _shards(p)[0], p / 'params.safetensors'),
     r'/params\.safetensors: not listed in bundle.json'),
    # A listing that points outside the bundle is not followed.
    (lambda p: _edit_listing(p, 0, file='../params.safetensors'),
     r"bundle.json: missing or malformed field .*'\.\./params\.safetensors'"),
])
def test_bad_shards_are_one_line_errors_naming_the_file(sharded, damage, message):
  _assert_one_line_error(sharded[0], damage, message)


def test_an_array_over_the_limit_is_refused_before_writing(fresh, tmp_path):
  spec, _, params = fresh
  flat = bundle.flatten_params(params)
  largest = max(a.nbytes for a in flat.values())
  first = min(k for k, a in flat.items() if a.nbytes == largest)
  target = tmp_path / 'out' / 'b'
  with pytest.raises(bundle.BundleError) as e:
    bundle.save_bundle(target, spec, params, step=1, max_file_bytes=largest - 1)
  assert str(e.value).startswith(f'{target}: array {first!r} is {largest} bytes')
  assert '\n' not in str(e.value)
  assert not os.listdir(tmp_path)  # not even the parent folder, nor a temporary one
