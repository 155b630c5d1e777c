"""LPIPS against a NumPy float64 reference of its formula, and its loader's errors."""

import jax.numpy as jnp
import numpy as np
import pytest

from clarity_jax.models import lpips as lpips_lib

safetensors_numpy = pytest.importorskip('safetensors.numpy')

# (torchvision features index, in, out, kernel) of the convs; pools: (window, stride)
# before these indices. Written out independently of the module's table.
_VGG16 = [(0, 3, 64), (2, 64, 64), (5, 64, 128), (7, 128, 128), (10, 128, 256),
          (12, 256, 256), (14, 256, 256), (17, 256, 512), (19, 512, 512),
          (21, 512, 512), (24, 512, 512), (26, 512, 512), (28, 512, 512)]
_VGG16_TAPS = (2, 7, 14, 21, 28)  # conv index whose ReLU LPIPS taps


def _np_conv(x, w, b, stride, pad):
  """x [H, W, C], w OIHW (PyTorch layout): cross-correlation as torch.nn.Conv2d."""
  x = np.pad(x, ((pad, pad), (pad, pad), (0, 0)))
  k = w.shape[-1]
  win = np.lib.stride_tricks.sliding_window_view(x, (k, k), axis=(0, 1))
  win = win[::stride, ::stride]  # [H', W', C, k, k]
  return np.tensordot(win, w, axes=([2, 3, 4], [1, 2, 3])) + b


def _np_maxpool(x, k, s):
  win = np.lib.stride_tricks.sliding_window_view(x, (k, k), axis=(0, 1))[::s, ::s]
  return win.max(axis=(-2, -1))


def _np_lpips(weights: dict, net: str, x0: np.ndarray, x1: np.ndarray) -> float:
  """The LPIPS formula in NumPy float64, one image pair [H, W, 3] in [0, 1]."""
  shift = np.array([-0.030, -0.088, -0.188])
  scale = np.array([0.458, 0.448, 0.450])

  def taps(x):
    h = ((2 * x - 1) - shift) / scale
    out = []
    if net == 'vgg':
      for idx, _, _ in _VGG16:
        if idx in (5, 10, 17, 24):
          h = _np_maxpool(h, 2, 2)
        h = np.maximum(_np_conv(h, weights[f'net.slice1.{idx}.weight'],
                                weights[f'net.slice1.{idx}.bias'], 1, 1), 0)
        if idx in _VGG16_TAPS:
          out.append(h)
    else:
      for idx, stride, pad in ((0, 4, 2), (3, 1, 2), (6, 1, 1), (8, 1, 1), (10, 1, 1)):
        if idx in (3, 6):
          h = _np_maxpool(h, 3, 2)
        h = np.maximum(_np_conv(h, weights[f'net.slice1.{idx}.weight'],
                                weights[f'net.slice1.{idx}.bias'], stride, pad), 0)
        out.append(h)
    return out

  total = 0.0
  for k, (f0, f1) in enumerate(zip(taps(x0), taps(x1))):
    n0 = f0 / (np.sqrt(np.sum(f0**2, axis=-1, keepdims=True)) + 1e-10)
    n1 = f1 / (np.sqrt(np.sum(f1**2, axis=-1, keepdims=True)) + 1e-10)
    w = weights[f'lin{k}.model.1.weight'].reshape(-1)
    total += np.mean(((n0 - n1) ** 2) @ w)
  return total


@pytest.mark.parametrize('net,size', [('vgg', 32), ('alex', 64)])
def test_lpips_matches_numpy_reference(tmp_path, net, size, random_lpips_weights):
  weights = random_lpips_weights(net, seed=0)
  path = str(tmp_path / f'lpips_{net}.safetensors')
  safetensors_numpy.save_file(weights, path)
  model = lpips_lib.load_lpips(path)
  assert model.net == net
  rng = np.random.default_rng(1)
  x1 = rng.uniform(0, 1, (2, size, size, 3)).astype(np.float32)
  x0 = np.clip(x1 + rng.normal(0, 0.1, x1.shape), 0, 1).astype(np.float32)
  got = np.asarray(model(jnp.asarray(x0), jnp.asarray(x1)))
  expected = [_np_lpips(weights, net, x0[i].astype(np.float64), x1[i]) for i in range(2)]
  np.testing.assert_allclose(got, expected, rtol=1e-4)
  assert float(model(jnp.asarray(x1[0]), jnp.asarray(x1[0]))) == 0.0


def test_lpips_loader_errors_and_unavailable(tmp_path, random_lpips_weights):
  assert lpips_lib.maybe_load_lpips('') is None
  weights = random_lpips_weights('alex', seed=0)
  del weights['net.slice1.10.weight'], weights['net.slice1.10.bias']
  path = str(tmp_path / 'four_convs.npz')
  np.savez(path, **weights)
  with pytest.raises(lpips_lib.WeightsFileError, match='found 4 conv layers') as info:
    lpips_lib.load_lpips(path)
  assert str(info.value).startswith(path)
  weights = random_lpips_weights('alex', seed=0)
  weights['lin2.model.1.weight'] = np.zeros((1, 7, 1, 1), np.float32)
  path = str(tmp_path / 'bad_lin.npz')
  np.savez(path, **weights)
  with pytest.raises(lpips_lib.WeightsFileError, match='lin2 has shape'):
    lpips_lib.load_lpips(path)
  with pytest.raises(lpips_lib.WeightsFileError, match='no such file'):
    lpips_lib.load_lpips(str(tmp_path / 'absent.safetensors'))
