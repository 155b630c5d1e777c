"""The trained ClarityNetSR that ships inside the package (clarity_jax/weights/).

`enhance`, `evaluate` and `validate` use it when no --bundle is given, so a plain
`pip install` restores footage with no download. Its files are checked against the
sha256 digests below before use: a damaged or altered installation is refused in
one line instead of restoring with weights nobody trained. How it was trained, and
how it was validated: docs/model_card.md.
"""

from __future__ import annotations

from pathlib import Path

from clarity_jax import files
from clarity_jax.inference import bundle as bundle_lib

NAME = 'claritynet_small_x4'
FOLDER = Path(__file__).resolve().parent.parent / 'weights' / NAME
# Every file of the shipped bundle. A new shipped model changes these with it, and
# only when it validates better (docs/model_card.md, "Replacing the model").
SHA256 = {
    'bundle.json':
        '0f43c3d9e67cfb4266abc5c50934f9625ed6be75257cf1f034b90faa00d9fd3b',
    'params.safetensors':
        '7f55f911439d0108a998fee360d433fde69ed17925014612e66bc5a124421fdb',
    # Its ONNX graphs, cut after the warp (export --format=onnx): what enhance
    # --engine=onnxruntime|openvino runs, float32 or (OpenVINO) bfloat16.
    'onnx/align.onnx':
        'e910b318b0f9ff7672ccbde1e6d131251cbbbaa35be4e77e02a60b4c92b9e943',
    'onnx/restore_aligned.onnx':
        '63dc9207d6b1e21f482e967546f6655894007e9d16bd64b2e5b725ad2dbf244c',
    'onnx/restore_aligned_uncertainty.onnx':
        '22fba64fb56ae6cf1b290256692df6124a6aced8323952c6b66d4686d1c74392',
}


def bundle_path(folder: Path = FOLDER, digests: dict[str, str | None] | None = None) -> Path:
  """The shipped bundle's folder, once each of its files matches its sha256."""
  digests = SHA256 if digests is None else digests
  if None in digests.values():
    raise bundle_lib.BundleError('--bundle', 'this clarity_jax ships no trained model yet; '
                                 'give a bundle')
  for name, want in digests.items():
    path = folder / name
    if not path.is_file():
      raise bundle_lib.BundleError(path, 'missing from the shipped model: the installation '
                                   'is incomplete; reinstall clarity_jax')
    digest = files.sha256_file(path)
    if digest != want:
      raise bundle_lib.BundleError(path, f'sha256 {digest[:12]}... is not the shipped '
                                   f"model's {str(want)[:12]}...: the installation is "
                                   'damaged or altered; reinstall clarity_jax')
  return folder


def describe(info: bundle_lib.BundleInfo) -> str:
  """For logs: which model restores."""
  m = info.model
  return (f'the shipped model {NAME} ({m.variant} x{m.scale} K={m.num_neighbors}, '
          f'step {info.step}, weights sha256 {info.params_sha256[:12]})')
