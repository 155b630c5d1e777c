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
# only when it validates better (docs/model_card.md, "Replacing the model"); the
# same weights run a cheaper way, when they lose at most 0.05 dB at every setting.
SHA256 = {
    'bundle.json':
        'eddab1add1f0b15d9e38b109a1a4fc2832840892fb3870118669957d36e42f40',
    'params.safetensors':
        '7f55f911439d0108a998fee360d433fde69ed17925014612e66bc5a124421fdb',
    # Its ONNX graphs, cut before and after the warp of the encoder's features (export
    # --format=onnx): what enhance --engine=onnxruntime|openvino runs, float32 or
    # (OpenVINO) bfloat16, each frame encoded once.
    'onnx/encode.onnx':
        'be0303f8ee7013b05c8e0799d36d56a86b5cc6ed359e8f3fbb40cf8a5061edec',
    'onnx/align.onnx':
        '1ec23d549061f624841c0f3bb55beca9c185dd21778a8834ed7f8162ef3fe034',
    'onnx/restore_aligned.onnx':
        '2fbb142a1f9bc3236784547bc4c1a67fb2102295086c1efdda3e7f12642670f6',
    'onnx/restore_aligned_uncertainty.onnx':
        'c57e29a2fd75f2741c07b4417ca0c5e6baf97ac63b71d50e416dc77c04ba82ac',
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
