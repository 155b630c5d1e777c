"""The Flax VGG19 against Keras' own VGG19, for every weights file layout we load."""

from flax import nnx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from clarity_jax.models import vgg as vgg_lib

keras = pytest.importorskip('keras')
h5py = pytest.importorskip('h5py')
safetensors_numpy = pytest.importorskip('safetensors.numpy')

LAYERS = ('block1_conv1', 'block2_conv2', 'block3_conv4', 'block4_conv4',
          'block5_conv4')
SIZE = 32


@pytest.fixture(scope='module')
def keras_vgg(tmp_path_factory):
  """A Keras VGG19 with random He-scaled weights and biases, saved in each layout.

  He scaling and non-zero biases keep deep activations O(1): Keras' default init
  (Glorot, zero bias) shrinks them towards zero, where any comparison passes.
  """
  model = keras.applications.VGG19(weights=None, include_top=False,
                                   input_shape=(SIZE, SIZE, 3))
  rng = np.random.default_rng(0)
  weights = []
  for w in model.get_weights():
    if w.ndim == 4:
      weights.append(rng.normal(0, np.sqrt(2.0 / np.prod(w.shape[:3])), w.shape))
    else:
      weights.append(rng.normal(0, 0.1, w.shape))
  model.set_weights([w.astype(np.float32) for w in weights])
  root = tmp_path_factory.mktemp('vgg')
  paths = {'keras3_weights': str(root / 'vgg19.weights.h5'),
           'keras_full_h5': str(root / 'vgg19_full.h5'),
           'keras_archive': str(root / 'vgg19.keras'),
           'keras2_notop': str(root / 'vgg19_notop.h5')}
  model.save_weights(paths['keras3_weights'])
  model.save(paths['keras_full_h5'])
  model.save(paths['keras_archive'])
  # The layout of vgg19_weights_tf_dim_ordering_tf_kernels_notop.h5 (layer groups
  # at the root), written by Keras' own legacy writer.
  from keras.src.legacy.saving import legacy_h5_format  # pylint: disable=g-import-not-at-top
  with h5py.File(paths['keras2_notop'], 'w') as f:
    legacy_h5_format.save_weights_to_hdf5_group(f, model)
  features = keras.Model(model.input, [model.get_layer(n).output for n in LAYERS])
  x = np.random.default_rng(1).uniform(0, 1, (2, SIZE, SIZE, 3)).astype(np.float32)
  return model, features, paths, x


def _assert_layers_match(ours: dict, ref: list, tol: float = 1e-4):
  """Our activations of LAYERS against Keras's, relative to each layer's scale (and
  none of them degenerate)."""
  for name, r in zip(LAYERS, ref):
    scale = max(1.0, float(np.abs(r).max()))
    err = float(np.abs(np.asarray(ours[name]) - r).max())
    assert err <= tol * scale, f'{name}: max error {err} (activation scale {scale})'
    assert float(np.abs(r).mean()) > 1e-2, f'{name}: degenerate activations'


@pytest.mark.parametrize('layout', ['keras3_weights', 'keras_full_h5', 'keras_archive',
                                    'keras2_notop'])
def test_keras_h5_matches_keras(keras_vgg, layout):
  _, features, paths, x = keras_vgg
  ref = features.predict(keras.applications.vgg19.preprocess_input(x * 255.0),
                         verbose=0)
  vgg = vgg_lib.load_vgg19(paths[layout])
  assert vgg.preprocessing == 'caffe'
  _assert_layers_match(vgg(jnp.asarray(x), LAYERS), ref)


def _torchvision_state_dict(model) -> dict[str, np.ndarray]:
  """The torchvision `vgg19().state_dict()` layout (OIHW) of the Keras weights."""
  out = {}
  for name, index in vgg_lib.TORCHVISION_INDEX.items():
    kernel, bias = model.get_layer(name).get_weights()
    out[f'features.{index}.weight'] = np.ascontiguousarray(kernel.transpose(3, 2, 0, 1))
    out[f'features.{index}.bias'] = bias
  return out


def test_torchvision_safetensors_matches_keras(keras_vgg, tmp_path):
  model, features, _, x = keras_vgg
  state = _torchvision_state_dict(model)
  # A full torchvision state dict also holds the classifier: it must be ignored.
  state['classifier.0.weight'] = np.zeros((4, 8), np.float32)
  path = str(tmp_path / 'vgg19_torchvision.safetensors')
  safetensors_numpy.save_file(state, path)
  vgg = vgg_lib.load_vgg19(path)
  assert vgg.preprocessing == 'torch'
  # Keras' 'torch' mode is the torchvision normalisation: an independent reference.
  torch_input = keras.applications.imagenet_utils.preprocess_input(
      x * 255.0, mode='torch')
  _assert_layers_match(vgg(jnp.asarray(x), LAYERS), features.predict(torch_input, verbose=0))


def test_torchvision_layout_in_npz(keras_vgg, tmp_path):
  model, _, paths, x = keras_vgg
  path = str(tmp_path / 'vgg19.npz')
  np.savez(path, **_torchvision_state_dict(model))
  ours = vgg_lib.load_vgg19(path)(jnp.asarray(x), ('block2_conv2',))['block2_conv2']
  # Same weights, other preprocessing: compare against the Keras file run with the
  # torchvision normalisation swapped in.
  keras_loaded = vgg_lib.load_vgg19(paths['keras3_weights'])
  keras_loaded.preprocessing = 'torch'
  ref = keras_loaded(jnp.asarray(x), ('block2_conv2',))['block2_conv2']
  np.testing.assert_allclose(np.asarray(ours), np.asarray(ref), rtol=1e-5, atol=1e-5)


def test_returns_only_requested_layers_and_jits(keras_vgg):
  _, _, paths, x = keras_vgg
  vgg = vgg_lib.load_vgg19(paths['keras3_weights'])
  out = vgg(jnp.asarray(x), ('block2_conv2', 'block1_conv1'))
  assert set(out) == {'block1_conv1', 'block2_conv2'}
  assert out['block1_conv1'].shape == (2, SIZE, SIZE, 64)
  assert out['block2_conv2'].shape == (2, SIZE // 2, SIZE // 2, 128)
  graphdef, state = nnx.split(vgg)
  jitted = jax.jit(vgg_lib.vgg_features, static_argnums=(0, 3))
  got = jitted(graphdef, state, jnp.asarray(x), ('block2_conv2',))['block2_conv2']
  np.testing.assert_allclose(np.asarray(got), np.asarray(out['block2_conv2']),
                             rtol=1e-5, atol=1e-5)
  with pytest.raises(ValueError, match='unknown VGG19 layers'):
    vgg(jnp.asarray(x), ('block6_conv1',))


def _one_line_error(path: str, match: str):
  with pytest.raises(vgg_lib.WeightsFileError) as info:
    vgg_lib.load_vgg19(path)
  message = str(info.value)
  assert message.startswith(path) and '\n' not in message, message
  assert match in message, message


def test_errors_name_the_file(keras_vgg, tmp_path):
  model, _, paths, _ = keras_vgg
  _one_line_error(str(tmp_path / 'absent.h5'), 'no such file')
  text = tmp_path / 'weights.txt'
  text.write_text('not weights')
  _one_line_error(str(text), 'unsupported format')
  fake_h5 = tmp_path / 'garbage.h5'
  fake_h5.write_bytes(b'not an hdf5 file at all')
  _one_line_error(str(fake_h5), 'not a readable Keras weights file')
  pth = tmp_path / 'vgg19.pth'
  pth.write_bytes(b'PK')
  _one_line_error(str(pth), 'never loaded')
  bad_st = tmp_path / 'bad.safetensors'
  bad_st.write_bytes(b'\x10\x00\x00\x00\x00\x00\x00\x00{broken json}   ')
  _one_line_error(str(bad_st), 'unreadable')

  # A Keras file lacking block5_conv4.
  missing = str(tmp_path / 'missing.h5')
  with h5py.File(paths['keras2_notop'], 'r') as src, h5py.File(missing, 'w') as dst:
    for key in src:
      if key != 'block5_conv4':
        src.copy(key, dst)
  _one_line_error(missing, 'no weights for VGG19 layer(s) block5_conv4')

  # A torchvision file whose block3_conv1 kernel has the wrong shape.
  state = _torchvision_state_dict(model)
  key = f'features.{vgg_lib.TORCHVISION_INDEX["block3_conv1"]}.weight'
  state[key] = np.zeros((256, 64, 3, 3), np.float32)
  wrong = str(tmp_path / 'wrong.safetensors')
  safetensors_numpy.save_file(state, wrong)
  _one_line_error(wrong, 'layer block3_conv1 has kernel (3, 3, 64, 256)')


def test_layer_table_is_vgg19():
  assert len(vgg_lib.LAYER_NAMES) == 16
  # torchvision vgg19().features: convs at these indices (pools at 4, 9, 18, 27, 36).
  assert list(vgg_lib.TORCHVISION_INDEX.values()) == [
      0, 2, 5, 7, 10, 12, 14, 16, 19, 21, 23, 25, 28, 30, 32, 34]
