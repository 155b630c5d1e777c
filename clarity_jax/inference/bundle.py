"""The inference bundle: a trained ClarityNetSR as a self-contained folder.

  BUNDLE/
    params.safetensors   every parameter, keys 'encoder/blocks/0/conv1/kernel'
    bundle.json          format, version, model config, normalisation, step, sha256

A bundle is what leaves the training machine: `enhance`, `evaluate` and other
users need neither the training config nor orbax nor the optimizer state, and
loading runs no code from the file (safetensors holds raw arrays, no pickle). The
sha256 in bundle.json catches a truncated or altered parameter file before a
single frame is restored with it. Bundles are written to a temporary folder and
renamed into place, so a crash never leaves a half-written bundle.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from pathlib import Path
import shutil
from typing import Any, Callable

import jax
import numpy as np
import safetensors
import safetensors.numpy
from flax import nnx

from clarity_jax import errors
from clarity_jax import files
from clarity_jax.models import claritynet
from clarity_jax.train import checkpoints

FORMAT = 'clarity_jax.bundle'
FORMAT_VERSION = 1
PARAMS_FILE = 'params.safetensors'
INFO_FILE = 'bundle.json'
# What the model expects and returns; recorded so a non-JAX user (TF Serving,
# another framework) can feed the network without reading this code.
INPUT_NORMALISATION = {
    'layout': '[batch, 2K+1, height, width, 3], frame K is the one restored',
    'color': 'RGB', 'dtype': 'float32', 'range': [0.0, 1.0],
    'output': '[batch, scale*height, scale*width, 3] float32, clip to [0, 1]',
}


class BundleError(errors.PathError):
  """A bundle is missing, of another format or version, or corrupt: '<path>: <what>'."""


@dataclasses.dataclass(frozen=True)
class ModelSpec:
  """The fields of configs/default.py that fix the network's structure."""
  variant: str
  scale: int
  num_neighbors: int
  use_alignment: bool = True
  use_attention: bool = True

  @classmethod
  def from_config(cls, config: Any) -> 'ModelSpec':
    return cls(variant=str(config.model.variant), scale=int(config.scale),
               num_neighbors=int(config.num_neighbors),
               use_alignment=bool(config.model.use_alignment),
               use_attention=bool(config.model.use_attention))

  @property
  def num_frames(self) -> int:
    return 2 * self.num_neighbors + 1

  def create(self, dtype: str = 'float32', seed: int = 0) -> claritynet.ClarityNetSR:
    return claritynet.create_model(
        self.variant, scale=self.scale, num_neighbors=self.num_neighbors,
        use_alignment=self.use_alignment, use_attention=self.use_attention,
        dtype=dtype, rngs=nnx.Rngs(seed))


@dataclasses.dataclass(frozen=True)
class BundleInfo:
  """What bundle.json says, parsed and checked."""
  model: ModelSpec
  step: int
  weights: str  # 'ema' or 'raw': which copy of the training parameters
  params_sha256: str
  package_version: str
  extra: dict[str, Any] = dataclasses.field(default_factory=dict)


def flatten_params(params: Any) -> dict[str, np.ndarray]:
  """Nested params (pure dict or nnx.State) -> {'a/b/c': array} for safetensors."""
  # np.ascontiguousarray would turn 0-d arrays (attention temperatures) into 1-d.
  return {k: np.asarray(jax.device_get(v), order='C')
          for k, v in checkpoints.flat_leaves(params).items()}


def unflatten_params(flat: dict[str, Any], like: Any) -> Any:
  """The inverse of flatten_params, shaped like `like` (e.g. the abstract params)."""
  return jax.tree_util.tree_map_with_path(
      lambda p, _: flat[checkpoints.leaf_name(p)], like)


def sha256_file(path: str | os.PathLike) -> str:
  digest = hashlib.sha256()
  with open(path, 'rb') as f:
    for chunk in iter(lambda: f.read(1 << 20), b''):
      digest.update(chunk)
  return digest.hexdigest()


def _abstract_model(spec: ModelSpec, dtype: str) -> tuple[nnx.GraphDef, Any]:
  """The graph and the parameter shapes of `spec`, without allocating anything."""
  graphdef, state = nnx.split(nnx.eval_shape(lambda: spec.create(dtype)))
  return graphdef, nnx.to_pure_dict(state)


def save_bundle(path: str | os.PathLike, spec: ModelSpec, params: Any, *, step: int,
                weights: str = 'raw',
                extras: Callable[[Path], dict[str, Any]] | None = None) -> BundleInfo:
  """Writes BUNDLE/ atomically (temporary folder, then rename); returns its info.

  `params` must match `spec` exactly (checked here, not at load time only, so a
  bad export fails on the training machine). `extras(tmp_dir)` may write more
  files into the bundle (e.g. a SavedModel) and returns fields for bundle.json.
  An existing bundle at `path` is replaced; any other existing file is refused.
  """
  path = Path(path)
  if path.exists() and not (path.is_dir() and (not any(path.iterdir())
                                               or (path / INFO_FILE).is_file())):
    raise BundleError(path, 'exists and is not a bundle; choose another --output')
  flat = flatten_params(params)
  _, abstract = _abstract_model(spec, 'float32')
  _check_params(path / PARAMS_FILE, flat, abstract, spec)
  path.parent.mkdir(parents=True, exist_ok=True)
  tmp = files.temp_sibling(path)
  shutil.rmtree(tmp, ignore_errors=True)
  tmp.mkdir()
  try:
    safetensors.numpy.save_file(flat, tmp / PARAMS_FILE,
                                metadata={'format': FORMAT, 'format_version': str(FORMAT_VERSION)})
    os.chmod(tmp / PARAMS_FILE, 0o644)  # safetensors creates it 0600; bundles are shared
    info = BundleInfo(model=spec, step=int(step), weights=weights,
                      params_sha256=sha256_file(tmp / PARAMS_FILE),
                      package_version=files.package_version(),
                      extra=extras(tmp) if extras is not None else {})
    (tmp / INFO_FILE).write_text(json.dumps(_info_to_json(info, len(flat)), indent=2) + '\n')
    files.replace_folder(tmp, path)
  except BaseException:
    shutil.rmtree(tmp, ignore_errors=True)
    raise
  return info


def _info_to_json(info: BundleInfo, num_arrays: int) -> dict[str, Any]:
  return {
      'format': FORMAT,
      'format_version': FORMAT_VERSION,
      'model': dataclasses.asdict(info.model),
      'input': INPUT_NORMALISATION,
      'training': {'step': info.step, 'weights': info.weights},
      'params': {'file': PARAMS_FILE, 'sha256': info.params_sha256, 'arrays': num_arrays},
      'package_version': info.package_version,
      **info.extra,
  }


def read_info(path: str | os.PathLike) -> BundleInfo:
  """bundle.json, checked: format, version and the model fields."""
  path = Path(path)
  if not path.is_dir():
    raise BundleError(path, 'no such bundle folder' if not path.exists() else
                      'not a bundle folder (expected a folder with bundle.json)')
  info_path = path / INFO_FILE
  if not info_path.is_file():
    raise BundleError(path, f'no {INFO_FILE}: not a clarity_jax bundle')
  try:
    raw = json.loads(info_path.read_text())
  except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
    raise BundleError(info_path, f'not readable JSON ({e})') from e
  if not isinstance(raw, dict) or raw.get('format') != FORMAT:
    found = raw.get('format') if isinstance(raw, dict) else None
    raise BundleError(info_path, f'format {found!r} is not {FORMAT!r}')
  if raw.get('format_version') != FORMAT_VERSION:
    raise BundleError(info_path, f'format_version {raw.get("format_version")!r} is not '
                      f'supported (this clarity_jax {files.package_version()} reads version '
                      f'{FORMAT_VERSION})')
  try:
    model = raw['model']
    spec = ModelSpec(variant=str(model['variant']), scale=int(model['scale']),
                     num_neighbors=int(model['num_neighbors']),
                     use_alignment=bool(model['use_alignment']),
                     use_attention=bool(model['use_attention']))
    known = {'format', 'format_version', 'model', 'input', 'training', 'params',
             'package_version'}
    return BundleInfo(model=spec, step=int(raw['training']['step']),
                      weights=str(raw['training']['weights']),
                      params_sha256=str(raw['params']['sha256']),
                      package_version=str(raw['package_version']),
                      extra={k: v for k, v in raw.items() if k not in known})
  except (KeyError, TypeError, ValueError) as e:
    raise BundleError(info_path, f'missing or malformed field ({e!r})') from e


def load_params(path: str | os.PathLike, dtype: str = 'float32'
                ) -> tuple[nnx.GraphDef, Any, BundleInfo]:
  """(graphdef, params, info): the jit-friendly split form of a bundle's model.

  The parameters are checked against the sha256 in bundle.json, then against the
  shapes the model of bundle.json expects. `dtype` is the computation dtype
  (parameters stay float32): 'bfloat16' on accelerators.
  """
  path = Path(path)
  info = read_info(path)
  params_path = path / PARAMS_FILE
  if not params_path.is_file():
    raise BundleError(params_path, 'missing (the bundle is incomplete)')
  digest = sha256_file(params_path)
  if digest != info.params_sha256:
    raise BundleError(params_path, f'sha256 {digest[:12]}... does not match '
                      f'{info.params_sha256[:12]}... in {INFO_FILE}: corrupt or altered')
  try:
    flat = safetensors.numpy.load_file(params_path)
  except (OSError, ValueError, safetensors.SafetensorError) as e:
    raise BundleError(params_path, f'not a readable safetensors file ({e})') from e
  try:
    graphdef, abstract = _abstract_model(info.model, dtype)
  except ValueError as e:  # unknown variant, scale, dtype
    raise BundleError(path / INFO_FILE, str(e)) from e
  _check_params(params_path, flat, abstract, info.model)
  return graphdef, unflatten_params(flat, abstract), info


def load_bundle(path: str | os.PathLike, dtype: str = 'float32'
                ) -> tuple[claritynet.ClarityNetSR, BundleInfo]:
  """(model, info): a ready ClarityNetSR with the bundle's parameters."""
  graphdef, params, info = load_params(path, dtype)
  return nnx.merge(graphdef, params), info


def _check_params(path: Path, flat: dict[str, np.ndarray], abstract: Any,
                  spec: ModelSpec) -> None:
  expected = checkpoints.flat_leaves(abstract)
  missing = sorted(set(expected) - set(flat))
  extra = sorted(set(flat) - set(expected))
  what = f'model {spec.variant} x{spec.scale} K={spec.num_neighbors}'
  if missing or extra:
    detail = (f'{len(missing)} missing (e.g. {missing[0]!r})' if missing else '') + (
        ', ' if missing and extra else '') + (
            f'{len(extra)} unexpected (e.g. {extra[0]!r})' if extra else '')
    raise BundleError(path, f'parameters do not match {what}: {detail}')
  for key, leaf in expected.items():
    array = flat[key]
    if tuple(array.shape) != tuple(leaf.shape) or array.dtype != leaf.dtype:
      raise BundleError(path, f'parameter {key!r} is {array.dtype}{list(array.shape)}, '
                        f'{what} expects {leaf.dtype}{list(leaf.shape)}')
