"""LPIPS (Zhang et al. 2018, v0.1): the learnt perceptual distance, as an nnx module.

Its weights are a file the user supplies (nothing is downloaded); evaluation scores
LPIPS only when one is given.
"""

import logging
import re

from flax import nnx
import jax
import jax.numpy as jnp
import numpy as np

from clarity_jax.models import vgg as vgg_lib

WeightsFileError = vgg_lib.WeightsFileError

# ----------------------------------------------------------------------------- LPIPS

# LPIPS (Zhang et al. 2018, v0.1, "lin" layers). Input scaling of its ScalingLayer,
# applied to images in [-1, 1].
_LPIPS_SHIFT = (-0.030, -0.088, -0.188)
_LPIPS_SCALE = (0.458, 0.448, 0.450)
# Backbones as torchvision builds them, cut at the 5 ReLUs LPIPS taps: per stage,
# an optional max-pool (window, stride) before it and its convs
# (in, out, kernel, stride, padding).
_LPIPS_NETS = {
    'vgg': (  # VGG16: relu1_2, relu2_2, relu3_3, relu4_3, relu5_3
        (None, ((3, 64, 3, 1, 1), (64, 64, 3, 1, 1))),
        ((2, 2), ((64, 128, 3, 1, 1), (128, 128, 3, 1, 1))),
        ((2, 2), ((128, 256, 3, 1, 1), (256, 256, 3, 1, 1), (256, 256, 3, 1, 1))),
        ((2, 2), ((256, 512, 3, 1, 1), (512, 512, 3, 1, 1), (512, 512, 3, 1, 1))),
        ((2, 2), ((512, 512, 3, 1, 1), (512, 512, 3, 1, 1), (512, 512, 3, 1, 1))),
    ),
    'alex': (  # AlexNet: relu1 .. relu5
        (None, ((3, 64, 11, 4, 2),)),
        ((3, 2), ((64, 192, 5, 1, 2),)),
        ((3, 2), ((192, 384, 3, 1, 1),)),
        (None, ((384, 256, 3, 1, 1),)),
        (None, ((256, 256, 3, 1, 1),)),
    ),
}


def _lpips_convs(net: str) -> list[tuple[int, int, int, int, int]]:
  return [conv for _, convs in _LPIPS_NETS[net] for conv in convs]


class LPIPS(nnx.Module):
  """Learned perceptual distance (lower is more similar), VGG16 or AlexNet variant.

  d(x0, x1) = sum_l mean_hw( w_l . (n0_l - n1_l)^2 ), where n_l are the backbone's
  features at tap l, unit-normalised over channels, and w_l the learned per-channel
  weights. Meaningful only with the official weights (see load_lpips).
  """

  def __init__(self, net: str = 'vgg', *, rngs: nnx.Rngs):
    if net not in _LPIPS_NETS:
      raise ValueError(f'LPIPS net must be one of {tuple(_LPIPS_NETS)}, got {net!r}')
    self.net = net
    self.convs = nnx.List([
        nnx.Conv(cin, cout, (k, k), strides=(s, s), padding=((p, p), (p, p)),
                 rngs=rngs) for cin, cout, k, s, p in _lpips_convs(net)])
    self.lins = nnx.List([nnx.Linear(convs[-1][1], 1, use_bias=False, rngs=rngs)
                          for _, convs in _LPIPS_NETS[net]])

  def features(self, x: jax.Array) -> list[jax.Array]:
    """x: RGB in [0, 1] -> the 5 tapped ReLU activations."""
    x = 2.0 * x - 1.0
    h = (x - jnp.asarray(_LPIPS_SHIFT)) / jnp.asarray(_LPIPS_SCALE)
    taps, i = [], 0
    for pool, convs in _LPIPS_NETS[self.net]:
      if pool is not None:
        h = nnx.max_pool(h, (pool[0], pool[0]), strides=(pool[1], pool[1]),
                         padding='VALID')
      for _ in convs:
        h = nnx.relu(self.convs[i](h))
        i += 1
      taps.append(h)
    return taps

  def __call__(self, pred: jax.Array, gt: jax.Array) -> jax.Array:
    """[B, H, W, 3] (or [H, W, 3]) RGB in [0, 1] -> per-image distance [B] (or scalar)."""
    single = pred.ndim == 3
    if single:
      pred, gt = pred[None], gt[None]
    n = pred.shape[0]
    taps = self.features(jnp.concatenate([pred, gt]).astype(jnp.float32))
    total = 0.0
    for h, lin in zip(taps, self.lins):
      h = h / (jnp.sqrt(jnp.sum(h * h, axis=-1, keepdims=True)) + 1e-10)
      total = total + jnp.mean(lin((h[:n] - h[n:]) ** 2), axis=(1, 2, 3))
    return total[0] if single else total


_CONV_KEY = re.compile(r'^(?:net\.slice\d+\.|features\.)?(\d+)\.(weight|bias)$')
_LIN_KEY = re.compile(r'^lin(\d+)\.model\.1\.weight$')


def load_lpips(path: str) -> LPIPS:
  """LPIPS with weights from a `.safetensors` or `.npz` file, without pickle.

  The file holds PyTorch-layout tensors: the backbone convs as `features.N.*` or as
  LPIPS's own `net.sliceK.N.*` (N = index in torchvision's `features`), and the linear
  layers as `linK.model.1.weight` [1, C, 1, 1]. 13 convs -> VGG16, 5 -> AlexNet. The
  documented one-time conversion, on a machine with torch and the `lpips` package
  (its official v0.1 linear weights and torchvision's ImageNet backbone):

    import lpips, safetensors.torch
    model = lpips.LPIPS(net='vgg')  # or net='alex'
    safetensors.torch.save_file(
        {k: v.contiguous() for k, v in model.state_dict().items()},
        'lpips_vgg.safetensors')

  Raises WeightsFileError (message starts with `path`) for a missing or unreadable
  file, or missing / mis-shaped layers.
  """
  vgg_lib.check_weights_path(path, ('.safetensors', '.npz'))
  arrays = vgg_lib.read_array_file(path)
  convs: dict[int, dict[str, np.ndarray]] = {}
  lins: dict[int, np.ndarray] = {}
  for key, value in arrays.items():
    if match := _CONV_KEY.match(key):
      convs.setdefault(int(match[1]), {})[match[2]] = value
    elif match := _LIN_KEY.match(key):
      lins[int(match[1])] = value
  net = {13: 'vgg', 5: 'alex'}.get(len(convs))
  if net is None:
    raise WeightsFileError(f'{path}: found {len(convs)} conv layers, expected 13 '
                           '(LPIPS VGG16) or 5 (LPIPS AlexNet)')
  if sorted(lins) != list(range(5)):
    raise WeightsFileError(f'{path}: linear layers lin0..lin4 expected, found '
                           f'{sorted(lins)}')
  model = nnx.eval_shape(lambda: LPIPS(net, rngs=nnx.Rngs(0)))
  for (index, conv), (cin, cout, k, _, _), layer in zip(
      sorted(convs.items()), _lpips_convs(net), model.convs):
    weight, bias = conv.get('weight'), conv.get('bias')
    if (weight is None or bias is None or weight.shape != (cout, cin, k, k)
        or bias.shape != (cout,)):
      raise WeightsFileError(
          f'{path}: conv {index} has weight '
          f'{None if weight is None else weight.shape} and bias '
          f'{None if bias is None else bias.shape}, expected {(cout, cin, k, k)} '
          f'and {(cout,)}')
    layer.kernel.set_value(jnp.asarray(np.transpose(weight, (2, 3, 1, 0)),
                                       jnp.float32))
    layer.bias.set_value(jnp.asarray(bias, jnp.float32))
  for k, (_, convs_k) in enumerate(_LPIPS_NETS[net]):
    channels = convs_k[-1][1]
    if lins[k].shape != (1, channels, 1, 1):
      raise WeightsFileError(f'{path}: lin{k} has shape {lins[k].shape}, expected '
                             f'{(1, channels, 1, 1)}')
    model.lins[k].kernel.set_value(jnp.asarray(lins[k].reshape(channels, 1),
                                               jnp.float32))
  return model



def maybe_load_lpips(path: str) -> LPIPS | None:
  """The LPIPS model, or None (reported 'unavailable', never faked) when unconfigured."""
  if not path:
    logging.warning('LPIPS unavailable: no LPIPS weights file configured '
                    '(see clarity_jax.models.lpips.load_lpips for the one-time conversion)')
    return None
  return load_lpips(path)
