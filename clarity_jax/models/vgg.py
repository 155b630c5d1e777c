"""A frozen VGG19 feature extractor in Flax NNX, for the perceptual loss of eq. (7).

The perceptual term compares restorations in the feature space of an ImageNet VGG19.
Nothing may be downloaded at run time, so the weights come from a file the user
already has, read without pickle:

* Keras `.h5`: the standard `vgg19_weights_tf_dim_ordering_tf_kernels_notop.h5` (or
  the full-model file with the top), a legacy full-model `.h5` written by
  `model.save('x.h5')`, a Keras 3 `.weights.h5` written by `model.save_weights`, or a
  Keras 3 `.keras` archive. Keras VGG weights expect 'caffe' preprocessing: BGR in
  [0, 255] minus the ImageNet mean pixel.
* `.safetensors` (or `.npz`) holding a torchvision VGG19 state dict (`features.N.weight`
  in OIHW layout). torchvision weights expect RGB in [0, 1] normalised by the ImageNet
  mean and std. The one-time conversion, on any machine with torch installed:

    import torch, torchvision, safetensors.torch
    sd = torchvision.models.vgg19(weights='IMAGENET1K_V1').state_dict()
    safetensors.torch.save_file(
        {k: v.contiguous() for k, v in sd.items() if k.startswith('features.')},
        'vgg19_torchvision.safetensors')

  Only that script unpickles (torchvision's own checkpoint); clarity_jax never does.

The network always takes RGB in [0, 1] and applies the preprocessing its weights were
trained with, so callers never need to know where the weights came from.
"""

from collections.abc import Sequence
import io
import os
import zipfile

from flax import nnx
import jax
import jax.numpy as jnp
import numpy as np

from clarity_jax import errors

# (name, in_channels, out_channels) of the conv layers, in order; Keras layer names.
_BLOCKS = ((1, 2, 3, 64), (2, 2, 64, 128), (3, 4, 128, 256), (4, 4, 256, 512),
           (5, 4, 512, 512))
VGG19_LAYERS: tuple[tuple[str, int, int], ...] = tuple(
    (f'block{b}_conv{i + 1}', cin if i == 0 else cout, cout)
    for b, n, cin, cout in _BLOCKS for i in range(n))
LAYER_NAMES: tuple[str, ...] = tuple(name for name, _, _ in VGG19_LAYERS)

# Keras 'caffe' mode (keras.applications.vgg19.preprocess_input): BGR mean pixel.
_CAFFE_MEAN_BGR = (103.939, 116.779, 123.68)
# torchvision ImageNet normalisation (RGB, on [0, 1]).
_TORCH_MEAN = (0.485, 0.456, 0.406)
_TORCH_STD = (0.229, 0.224, 0.225)
PREPROCESSING = ('caffe', 'torch')


class WeightsFileError(errors.PathError):
  """A weights file is missing, unreadable or lacks the expected layers.

  The message starts with the file's path, so a one-line log says what to fix.
  """


def _torchvision_conv_indices() -> dict[str, int]:
  """Keras conv name -> index in torchvision's `vgg19().features` Sequential."""
  out, index = {}, 0
  for name, _, _ in VGG19_LAYERS:
    if name.endswith('_conv1') and name != 'block1_conv1':
      index += 1  # the MaxPool2d closing the previous block
    out[name] = index
    index += 2  # Conv2d + ReLU
  return out


TORCHVISION_INDEX = _torchvision_conv_indices()


class VGG19(nnx.Module):
  """Conv part of VGG19 (blocks 1-5), returning the requested post-ReLU activations.

  Layer attributes carry the Keras names (`block1_conv1` ... `block5_conv4`), so the
  activation of layer 'block3_conv4' is what Keras' layer of that name outputs.
  """

  def __init__(self, preprocessing: str = 'caffe', *,
               dtype: jnp.dtype = jnp.float32, rngs: nnx.Rngs):
    if preprocessing not in PREPROCESSING:
      raise ValueError(f'preprocessing must be one of {PREPROCESSING}, '
                       f'got {preprocessing!r}')
    self.preprocessing = preprocessing
    for name, cin, cout in VGG19_LAYERS:
      setattr(self, name, nnx.Conv(cin, cout, (3, 3), padding='SAME', dtype=dtype,
                                   param_dtype=jnp.float32, rngs=rngs))

  def preprocess(self, x: jax.Array) -> jax.Array:
    """RGB in [0, 1] -> the input the weights were trained on."""
    if self.preprocessing == 'caffe':
      return x[..., ::-1] * 255.0 - jnp.asarray(_CAFFE_MEAN_BGR, x.dtype)
    return (x - jnp.asarray(_TORCH_MEAN, x.dtype)) / jnp.asarray(_TORCH_STD, x.dtype)

  def __call__(self, x: jax.Array, layers: Sequence[str]) -> dict[str, jax.Array]:
    """x: [B, H, W, 3] RGB in [0, 1]. Runs only as deep as the deepest layer asked."""
    layers = tuple(layers)
    unknown = [name for name in layers if name not in LAYER_NAMES]
    if unknown or not layers:
      raise ValueError(f'unknown VGG19 layers {unknown or layers}; '
                       f'choose from {LAYER_NAMES}')
    if x.shape[-1] != 3:
      raise ValueError(f'VGG19 expects RGB images [..., 3], got shape {x.shape}')
    depth = max(LAYER_NAMES.index(name) for name in layers)
    h = self.preprocess(x)
    out = {}
    for name in LAYER_NAMES[:depth + 1]:
      if name.endswith('_conv1') and name != 'block1_conv1':
        h = nnx.max_pool(h, (2, 2), strides=(2, 2), padding='VALID')
      h = nnx.relu(getattr(self, name)(h))
      if name in layers:
        out[name] = h
    return out


def vgg_features(graphdef: nnx.GraphDef, state: nnx.State, x: jax.Array,
                 layers: Sequence[str]) -> dict[str, jax.Array]:
  """Pure-function form for a jitted train step that passes the VGG as data."""
  return nnx.merge(graphdef, state)(x, layers)


# --------------------------------------------------------------------------- loading


def read_array_file(path: str) -> dict[str, np.ndarray]:
  """All tensors of a `.safetensors` or `.npz` file, as NumPy arrays, without pickle."""
  # Imported here, not at the top: the loss must import on machines without it.
  import safetensors  # pylint: disable=g-import-not-at-top
  import safetensors.numpy  # pylint: disable=g-import-not-at-top
  try:
    if path.endswith('.safetensors'):
      return dict(safetensors.numpy.load_file(path))
    with np.load(path, allow_pickle=False) as data:
      return {key: data[key] for key in data.files}
  except (OSError, ValueError, zipfile.BadZipFile, safetensors.SafetensorError) as e:
    raise WeightsFileError(path, f'unreadable ({type(e).__name__}: {e})') from e


def check_weights_path(path: str, allowed: Sequence[str]) -> None:
  """Fail early, naming the file, for a missing file or a format we do not read."""
  if not path:
    raise WeightsFileError(f"{path!r}: no weights file given")
  if not os.path.isfile(path):
    raise WeightsFileError(path, 'no such file')
  if path.endswith(('.pth', '.pt', '.bin', '.ckpt', '.pkl')):
    raise WeightsFileError(
        path, 'a PyTorch/pickle checkpoint is never loaded (pickle can run code); '
        'convert it once to .safetensors as the module docstring shows')
  if not path.endswith(tuple(allowed)):
    raise WeightsFileError(path, f'unsupported format, expected one of {allowed}')


def _decode(name) -> str:
  return name.decode() if isinstance(name, bytes) else str(name)


def _keras_h5_arrays(h5, wanted: Sequence[str]) -> dict[str, list[np.ndarray]]:
  """Layer name -> its weight arrays, from any of the Keras HDF5 layouts."""
  import h5py  # pylint: disable=g-import-not-at-top  # optional at import time
  out = {}
  if 'layers' in h5 and 'layer_names' not in h5.attrs and 'model_weights' not in h5:
    # Keras 3 `.weights.h5`: layers/<auto name>/vars/{0,1,...}; the real layer name is
    # the `name` attribute of the `vars` group (the group key is e.g. 'conv2d_3').
    def visit(key, obj):
      if key.endswith('vars') and isinstance(obj, h5py.Group):
        name = _decode(obj.attrs.get('name', ''))
        if name in wanted:
          out[name] = [np.asarray(obj[str(i)]) for i in range(len(obj))]
    h5.visititems(visit)
    return out
  # Keras 2 / legacy layout (the official notop file, `model.save('x.h5')`): one group
  # per layer, whose `weight_names` attribute lists its datasets in order.
  root = h5['model_weights'] if 'model_weights' in h5 else h5
  for name in wanted:
    if name in root:
      group = root[name]
      names = [_decode(n) for n in group.attrs.get('weight_names', [])]
      out[name] = [np.asarray(group[n]) for n in names]
  return out


def _read_keras(path: str) -> dict[str, list[np.ndarray]]:
  import h5py  # pylint: disable=g-import-not-at-top
  try:
    if path.endswith('.keras'):
      with zipfile.ZipFile(path) as archive:
        data = io.BytesIO(archive.read('model.weights.h5'))
      with h5py.File(data, 'r') as h5:
        return _keras_h5_arrays(h5, LAYER_NAMES)
    with h5py.File(path, 'r') as h5:
      return _keras_h5_arrays(h5, LAYER_NAMES)
  except (OSError, KeyError, zipfile.BadZipFile) as e:
    raise WeightsFileError(path, f'not a readable Keras weights file ({e})') from e


def _read_torchvision(path: str) -> dict[str, list[np.ndarray]]:
  """torchvision state dict (OIHW) -> Keras layout (HWIO), per Keras layer name."""
  arrays = read_array_file(path)
  out = {}
  for name, index in TORCHVISION_INDEX.items():
    for prefix in ('features.', ''):
      w, b = f'{prefix}{index}.weight', f'{prefix}{index}.bias'
      if w in arrays and b in arrays:
        if arrays[w].ndim != 4:
          raise WeightsFileError(path, f'{w} has shape {arrays[w].shape}, expected '
                                 'a 4-D OIHW conv kernel')
        out[name] = [np.transpose(arrays[w], (2, 3, 1, 0)), arrays[b]]
        break
  return out


def load_vgg19(path: str, *, dtype: jnp.dtype = jnp.float32) -> VGG19:
  """VGG19 with ImageNet weights from a Keras `.h5`/`.keras` or torchvision `.safetensors`.

  The preprocessing follows the file: Keras files -> 'caffe', torchvision -> 'torch'.
  Raises WeightsFileError (message starts with `path`) for a missing file, a format we
  do not read, or missing / mis-shaped layers.
  """
  check_weights_path(path, ('.h5', '.hdf5', '.keras', '.safetensors', '.npz'))
  if path.endswith(('.safetensors', '.npz')):
    preprocessing, layers = 'torch', _read_torchvision(path)
  else:
    preprocessing, layers = 'caffe', _read_keras(path)
  missing = [name for name in LAYER_NAMES if name not in layers]
  if missing:
    raise WeightsFileError(path, f'no weights for VGG19 layer(s) {", ".join(missing)}'
                           ' (is this a VGG19 weights file?)')
  # Build without initialising 20M random weights, then fill in the file's values.
  vgg = nnx.eval_shape(lambda: VGG19(preprocessing, dtype=dtype, rngs=nnx.Rngs(0)))
  for name, cin, cout in VGG19_LAYERS:
    kernels = [a for a in layers[name] if a.ndim == 4]
    biases = [a for a in layers[name] if a.ndim == 1]
    if len(kernels) != 1 or len(biases) != 1:
      raise WeightsFileError(path, f'layer {name} holds arrays of shapes '
                             f'{[a.shape for a in layers[name]]}, expected a kernel '
                             'and a bias')
    (kernel,), (bias,) = kernels, biases
    if kernel.shape != (3, 3, cin, cout) or bias.shape != (cout,):
      raise WeightsFileError(path, f'layer {name} has kernel {kernel.shape} and bias '
                             f'{bias.shape}, expected {(3, 3, cin, cout)} and {(cout,)}')
    conv = getattr(vgg, name)
    conv.kernel.set_value(jnp.asarray(kernel, jnp.float32))
    conv.bias.set_value(jnp.asarray(bias, jnp.float32))
  return vgg
