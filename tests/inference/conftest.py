"""Fixtures of the inference tests: one tiny untrained network and its bundle, real-photo
windows to restore, a jitted forward pass, and the enhance command line."""

import subprocess
import sys

import cv2
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
import skimage.data

from clarity_jax.inference import bundle
from clarity_jax.inference import export
from clarity_jax.inference import restorer

# The tiny network's scale and K (test files read them as tiny_model.scale, .k).
SCALE, K = 2, 1


class TinyModel:
  """A randomly initialised tiny ClarityNetSR (K=1, x2), its bundle and two ways
  through it: the Restorer (tiles, batches) and the network on whole windows."""

  def __init__(self, path, graphdef, params, uncertainty=False):
    self.path, self.graphdef, self.params = path, graphdef, params
    self.uncertainty = uncertainty
    self.scale, self.k = SCALE, K
    self._forward = jax.jit(lambda p, x: jnp.clip(nnx.merge(graphdef, p)(x), 0, 1))

  def restorer(self, **kwargs) -> restorer.Restorer:
    return restorer.Restorer(self.graphdef, self.params, scale=SCALE, num_neighbors=K,
                             uncertainty=self.uncertainty, **kwargs)

  def reference(self, windows: np.ndarray) -> np.ndarray:
    """The network applied to whole windows directly: what tiling must reproduce."""
    return np.asarray(self._forward(self.params, windows))


@pytest.fixture(scope='session')
def tiny_model(tmp_path_factory, random_params) -> TinyModel:
  """Untrained, but a real network: its output is far from bicubic and its
  receptive field (flow pyramid, half-resolution attention) reaches well past a
  tile's edge, so tiling has something to get wrong."""
  spec = bundle.ModelSpec('tiny', scale=SCALE, num_neighbors=K)
  graphdef, params = random_params(spec, seed=1)
  path = tmp_path_factory.mktemp('bundle') / 'tiny_x2'
  bundle.save_bundle(path, spec, params, step=0)
  return TinyModel(path, graphdef, params)


@pytest.fixture(scope='session')
def tiny_head_model(tmp_path_factory, random_params) -> TinyModel:
  """tiny_model's network with an uncertainty head: the same restorer weights (the
  head's keys sort last, so the same seed draws the same restorer), restoring
  error-scale maps too."""
  spec = bundle.ModelSpec('tiny', scale=SCALE, num_neighbors=K, uncertainty=True)
  graphdef, params = random_params(spec, seed=1)
  path = tmp_path_factory.mktemp('bundle') / 'tiny_x2_uncertainty'
  bundle.save_bundle(path, spec, params, step=0)
  return TinyModel(path, graphdef, params, uncertainty=True)


@pytest.fixture(scope='session')
def onnx_bundle(tiny_head_model, tmp_path_factory):
  """tiny_head_model's bundle exported again with its ONNX graphs (with and without
  the head): (path, BundleInfo). Exported once for the export and engine tests, which
  skip where the extras are not installed (".[onnx]": export, ".[deploy]": engines)."""
  for module in ('jax2onnx', 'onnx', 'onnxruntime'):  # export checks its graphs in ORT
    pytest.importorskip(module)
  out = tmp_path_factory.mktemp('onnx') / 'bundle'
  return out, export.export(None, out, formats=['onnx'], source_bundle=tiny_head_model.path)


@pytest.fixture(scope='session')
def onnx_feature_bundle(tmp_path_factory, random_params):
  """A tiny untrained network that warps its encoder's features (K=1, x2, with the
  head), exported with its ONNX graphs: (path, BundleInfo). Skips as onnx_bundle."""
  for module in ('jax2onnx', 'onnx', 'onnxruntime'):
    pytest.importorskip(module)
  spec = bundle.ModelSpec('tiny', scale=SCALE, num_neighbors=K, uncertainty=True,
                          warp_features=True)
  _, params = random_params(spec, seed=2)
  root = tmp_path_factory.mktemp('onnx_features')
  bundle.save_bundle(root / 'source', spec, params, step=0)
  out = root / 'bundle'
  return out, export.export(None, out, formats=['onnx'], source_bundle=root / 'source')


def _photo_windows(n: int, h: int, w: int) -> np.ndarray:
  """[n, 3, h, w, 3] windows of a real photograph panning (skimage astronaut)."""
  img = cv2.resize(skimage.data.astronaut(), (w + 4 * (n + 2), h + 3 * (n + 2)),
                   interpolation=cv2.INTER_AREA).astype(np.float32) / 255.0
  seq = [img[3 * t:3 * t + h, 4 * t:4 * t + w] for t in range(n + 2)]
  return np.stack([np.stack(seq[t:t + 3]) for t in range(n)])


@pytest.fixture(scope='session')
def photo_windows():
  """photo_windows(n, h, w) -> [n, 3, h, w, 3] float32 windows of a panning photo."""
  return _photo_windows


@jax.jit(static_argnums=0)
def _forward(graphdef, state, window):
  return nnx.merge(graphdef, state)(window)


@pytest.fixture(scope='session')
def forward():
  """forward(model, window) -> np.ndarray: an nnx model's forward pass, jitted
  (eager NNX runs op by op: slow on 2 cores)."""
  return lambda model, window: np.asarray(_forward(*nnx.split(model), window))


@pytest.fixture(scope='session')
def enhance_command():
  """enhance_command(*flags) -> the argv of `python -m clarity_jax.enhance
  --progress=false *flags`."""
  return lambda *flags: [sys.executable, '-m', 'clarity_jax.enhance', '--progress=false',
                         *flags]


@pytest.fixture(scope='session')
def run_enhance(repo, command_env, enhance_command):
  """run_enhance(*flags, **run_kwargs) -> the finished enhance process: from the
  checkout, output captured as text; run_kwargs (cwd, env, ...) replace those."""
  def run(*flags: str, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(enhance_command(*flags), **{
        'cwd': repo, 'env': command_env, 'capture_output': True, 'text': True,
        'timeout': 600, **kwargs})
  return run
