"""The inference bundle: a trained ClarityNetSR as a self-contained folder.

  BUNDLE/
    params.safetensors   every parameter, keys 'encoder/blocks/0/conv1/kernel'
    bundle.json          format, version, model config, normalisation, step, sha256

What leaves the training machine: `enhance`, `evaluate` and other users need no
training config, orbax or optimizer state, and loading runs no code from the file
(safetensors holds raw arrays, no pickle). The sha256 in bundle.json catches a
truncated or altered parameter file before a frame is restored with it; every
field is checked for type and range. Bundles are written to a temporary folder and
renamed into place, so a crash never leaves a half-written bundle.

For channels that cap file sizes, and variants too large for one file, parameters
can be sharded as Hugging Face shards safetensors (params-00001-of-0000N.safetensors):
sorted keys packed greedily, no array split, each file at most `max_file_bytes` and
listed in bundle.json with its sha256. Only sharded bundles are format_version 2: a
single-file bundle stays readable by every clarity_jax, and an older one refuses
shards by their version. Their `params_sha256` is the sha256 of the shards' hex
digests concatenated in order (`sha256sum params-*.safetensors | cut -c1-64 | tr -d
'\\n' | sha256sum`).
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
from clarity_jax.inference import model_spec
from clarity_jax.inference.model_spec import ModelSpec
from clarity_jax.models import claritynet
from clarity_jax.models import parameters

FORMAT = 'clarity_jax.bundle'
FORMAT_VERSION = 1  # one params.safetensors: every bundle before sharding
SHARDED_FORMAT_VERSION = 2  # params-00001-of-0000N.safetensors, listed in bundle.json
READABLE_VERSIONS = (FORMAT_VERSION, SHARDED_FORMAT_VERSION)
PARAMS_FILE = 'params.safetensors'
PARAMS_GLOB = 'params*.safetensors'  # what a stray parameter file is recognised by
# Inside every parameter file too, so that a lone file says what it belongs to. One
# key: safetensors writes its metadata in hash-map order, which changes from save to
# save, so two keys gave the same parameters different bytes (and sha256s).
METADATA = {v: {'format': f'{FORMAT}/{v}'} for v in READABLE_VERSIONS}
INFO_FILE = 'bundle.json'
# What the model expects and returns, for non-JAX users (TF Serving, others).
INPUT_NORMALISATION = {
    'layout': '[batch, 2K+1, height, width, 3], frame K is the one restored',
    'color': 'RGB', 'dtype': 'float32', 'range': [0.0, 1.0],
    'output': '[batch, scale*height, scale*width, 3] float32, clip to [0, 1]',
}


class BundleError(errors.PathError):
  """A bundle is missing, of another format or version, or corrupt: '<path>: <what>'."""


@dataclasses.dataclass(frozen=True)
class ParamsFile:
  """One safetensors file of a bundle's parameters, as bundle.json lists it."""
  file: str
  sha256: str
  arrays: int


@dataclasses.dataclass(frozen=True)
class BundleInfo:
  """What bundle.json says, parsed and checked."""
  model: ModelSpec
  step: int
  weights: str  # 'ema' or 'raw': which copy of the training parameters
  params_sha256: str  # one file's sha256, or for shards combined_sha256 of theirs
  package_version: str
  extra: dict[str, Any] = dataclasses.field(default_factory=dict)
  params_files: tuple[ParamsFile, ...] = ()  # params.safetensors, or the shards in order

  @property
  def sharded(self) -> bool:
    return [f.file for f in self.params_files] != [PARAMS_FILE]


def flatten_params(params: Any) -> dict[str, np.ndarray]:
  """Nested params (pure dict or nnx.State) -> {'a/b/c': array} for safetensors."""
  # np.ascontiguousarray would turn 0-d arrays (attention temperatures) into 1-d.
  return {k: np.asarray(jax.device_get(v), order='C')
          for k, v in parameters.flat_leaves(params).items()}


def unflatten_params(flat: dict[str, Any], like: Any) -> Any:
  """The inverse of flatten_params, shaped like `like` (e.g. the abstract params)."""
  return jax.tree_util.tree_map_with_path(
      lambda p, _: flat[parameters.leaf_name(p)], like)


def combined_sha256(digests: list[str]) -> str:
  """The sha256 of the shards' hex digests concatenated in order: one value that
  names a sharded bundle's weights, as a single file's sha256 does."""
  return hashlib.sha256(''.join(digests).encode('ascii')).hexdigest()


def shard_name(index: int, count: int) -> str:
  """'params-00002-of-00003.safetensors' for shard `index` (from 1) of `count`."""
  return f'params-{index:05d}-of-{count:05d}.safetensors'


def _abstract_model(spec: ModelSpec, dtype: str) -> tuple[nnx.GraphDef, Any]:
  """The graph and the parameter shapes of `spec`, without allocating anything."""
  graphdef, state = nnx.split(nnx.eval_shape(lambda: spec.create(dtype)))
  return graphdef, nnx.to_pure_dict(state)


# safetensors tells no file size before writing, and serialising each candidate
# shard would copy the weights once per array. A file is 8 bytes of header length,
# a JSON header padded to 8, then the arrays; json.dumps (spaces, 20-digit offsets)
# bounds each header entry from above (save_bundle checks written sizes too).
def _array_bytes_bound(key: str, array: np.ndarray) -> int:
  return array.nbytes + len(json.dumps({key: {
      'dtype': 'F8_E4M3', 'shape': list(array.shape), 'data_offsets': [2**64 - 1] * 2}}))


def plan_files(flat: dict[str, np.ndarray], max_file_bytes: int | None, path: Path
               ) -> list[list[str]]:
  """The keys of each parameter file: one file when it fits (or without a limit),
  else shards of sorted keys packed greedily, never splitting an array.

  An array that alone exceeds the limit is a BundleError at `path` naming it.
  """
  keys = sorted(flat)
  if max_file_bytes is None:
    return [keys]
  costs = {k: _array_bytes_bound(k, flat[k]) for k in keys}
  base = 16 + len(json.dumps({'__metadata__': METADATA[SHARDED_FORMAT_VERSION]}))
  if base + sum(costs.values()) <= max_file_bytes:  # versions' metadata: same length
    return [keys]
  plan, size = [[]], base
  for key in keys:
    if base + costs[key] > max_file_bytes:
      raise BundleError(path, f'array {key!r} is {flat[key].nbytes} bytes; with its '
                        f'safetensors header it does not fit a file of at most '
                        f'{max_file_bytes} bytes (arrays are never split)')
    if plan[-1] and size + costs[key] > max_file_bytes:
      plan.append([])
      size = base
    plan[-1].append(key)
    size += costs[key]
  return plan


def save_bundle(path: str | os.PathLike, spec: ModelSpec, params: Any, *, step: int,
                weights: str = 'raw',
                extras: Callable[[Path, str], dict[str, Any]] | None = None,
                max_file_bytes: int | None = None) -> BundleInfo:
  """Writes BUNDLE/ atomically (temporary folder, then rename); returns its info.

  `params` must match `spec` exactly (checked here, not at load time only, so a
  bad export fails on the training machine). `extras(tmp_dir, params_sha256)` may
  write more files into the bundle (a SavedModel, ONNX graphs) and returns fields for
  bundle.json.
  `max_file_bytes` caps every parameter file: parameters that do not fit one file
  are sharded (version 2, see the module docstring); None: one file. An existing
  bundle at `path` is replaced; any other existing file is refused.
  """
  path = Path(path)
  if path.exists() and not (path.is_dir() and (not any(path.iterdir())
                                               or (path / INFO_FILE).is_file())):
    raise BundleError(path, 'exists and is not a bundle; choose another --output')
  flat = flatten_params(params)
  _, abstract = _abstract_model(spec, 'float32')
  _check_params(path / PARAMS_FILE, flat, abstract, spec)
  plan = plan_files(flat, max_file_bytes, path)
  version = FORMAT_VERSION if len(plan) == 1 else SHARDED_FORMAT_VERSION
  path.parent.mkdir(parents=True, exist_ok=True)
  tmp = files.temp_sibling(path)
  shutil.rmtree(tmp, ignore_errors=True)
  tmp.mkdir()
  try:
    written = []
    for i, keys in enumerate(plan):
      name = PARAMS_FILE if len(plan) == 1 else shard_name(i + 1, len(plan))
      # The single file gets the dict as it comes, as before sharding: same bytes.
      arrays = flat if len(plan) == 1 else {k: flat[k] for k in keys}
      safetensors.numpy.save_file(arrays, tmp / name, metadata=METADATA[version])
      os.chmod(tmp / name, 0o644)  # safetensors creates it 0600; bundles are shared
      size = (tmp / name).stat().st_size  # the bound of plan_files, checked
      assert max_file_bytes is None or size <= max_file_bytes, (name, size)
      written.append(ParamsFile(name, files.sha256_file(tmp / name), len(keys)))
    digest = (combined_sha256([f.sha256 for f in written]) if len(plan) > 1
              else written[0].sha256)
    info = BundleInfo(model=spec, step=int(step), weights=weights,
                      params_sha256=digest, package_version=files.package_version(),
                      extra=extras(tmp, digest) if extras is not None else {},
                      params_files=tuple(written))
    (tmp / INFO_FILE).write_text(json.dumps(_info_to_json(info), indent=2) + '\n')
    files.replace_folder(tmp, path)
  except BaseException:
    shutil.rmtree(tmp, ignore_errors=True)
    raise
  return info


def _info_to_json(info: BundleInfo) -> dict[str, Any]:
  num_arrays = sum(f.arrays for f in info.params_files)
  params = ({'files': [dataclasses.asdict(f) for f in info.params_files],
             'arrays': num_arrays} if info.sharded else
            {'file': PARAMS_FILE, 'sha256': info.params_sha256, 'arrays': num_arrays})
  return {
      'format': FORMAT,
      'format_version': SHARDED_FORMAT_VERSION if info.sharded else FORMAT_VERSION,
      'model': dataclasses.asdict(info.model),
      'input': INPUT_NORMALISATION,
      'training': {'step': info.step, 'weights': info.weights},
      'params': params,
      'package_version': info.package_version,
      **info.extra,
  }


def read_info(path: str | os.PathLike) -> BundleInfo:
  """bundle.json, checked: format, version, the model fields, and the parameter
  files it lists present with no stray one beside them (their contents are
  load_params' to check)."""
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
  version = raw.get('format_version')
  if version not in READABLE_VERSIONS:
    raise BundleError(info_path, f'format_version {version!r} is not supported (this '
                      f'clarity_jax {files.package_version()} reads versions '
                      f'{", ".join(map(str, READABLE_VERSIONS))})')
  try:
    spec = ModelSpec.from_json(raw['model'])
    params_files, digest = _read_params_listing(raw['params'], version)
    known = {'format', 'format_version', 'model', 'input', 'training', 'params',
             'package_version'}
    info = BundleInfo(model=spec, step=int(raw['training']['step']),
                      weights=str(raw['training']['weights']),
                      params_sha256=digest,
                      package_version=str(raw['package_version']),
                      extra={k: v for k, v in raw.items() if k not in known},
                      params_files=params_files)
  except model_spec.FieldError as e:
    raise BundleError(info_path, str(e)) from e
  except (KeyError, TypeError, ValueError) as e:
    raise BundleError(info_path, f'missing or malformed field ({e!r})') from e
  for f in params_files:
    if not (path / f.file).is_file():
      raise BundleError(path / f.file, 'missing (the bundle is incomplete)')
  for stray in sorted(path.glob(PARAMS_GLOB)):
    if stray.name not in {f.file for f in params_files}:
      raise BundleError(stray, f'not listed in {INFO_FILE} (left from another export?); '
                        'remove it or export again')
  return info


def _read_params_listing(params: dict[str, Any], version: int
                         ) -> tuple[tuple[ParamsFile, ...], str]:
  """(files, params_sha256) from bundle.json's 'params'; ValueError if malformed."""
  if version == FORMAT_VERSION:
    one = ParamsFile(PARAMS_FILE, str(params['sha256']), int(params['arrays']))
    return (one,), one.sha256
  listing = params['files']
  if not isinstance(listing, list) or not listing:
    raise ValueError("'params.files' is not a non-empty list")
  shards = tuple(ParamsFile(str(f['file']), str(f['sha256']), int(f['arrays']))
                 for f in listing)
  for i, shard in enumerate(shards):
    # Only the names save_bundle writes: a listing never reaches outside the bundle.
    if shard.file != shard_name(i + 1, len(shards)):
      raise ValueError(f'params file {i + 1} is {shard.file!r}, not '
                       f'{shard_name(i + 1, len(shards))!r}')
  if sum(f.arrays for f in shards) != int(params['arrays']):
    raise ValueError(f"'params.arrays' {params['arrays']!r} is not the sum over its files")
  return shards, combined_sha256([f.sha256 for f in shards])


def load_params(path: str | os.PathLike, dtype: str = 'float32'
                ) -> tuple[nnx.GraphDef, Any, BundleInfo]:
  """(graphdef, params, info): the jit-friendly split form of a bundle's model.

  Every parameter file is checked against its sha256 in bundle.json, then their
  arrays together against the names and shapes bundle.json's model expects.
  `dtype` is the computation dtype (parameters stay float32): 'bfloat16' on GPU/TPU.
  """
  path = Path(path)
  info = read_info(path)
  flat, owner = {}, {}
  for f in info.params_files:
    file_path = path / f.file
    digest = files.sha256_file(file_path)
    if digest != f.sha256:
      raise BundleError(file_path, f'sha256 {digest[:12]}... does not match '
                        f'{f.sha256[:12]}... in {INFO_FILE}: corrupt or altered')
    try:
      arrays = safetensors.numpy.load_file(file_path)
    except (OSError, ValueError, safetensors.SafetensorError) as e:
      raise BundleError(file_path, f'not a readable safetensors file ({e})') from e
    twice = sorted(set(arrays) & set(owner))
    if twice:
      raise BundleError(file_path, f'{twice[0]!r} is also in {owner[twice[0]].name}')
    if len(arrays) != f.arrays:
      raise BundleError(file_path, f'holds {len(arrays)} arrays where {INFO_FILE} '
                        f'lists {f.arrays}')
    owner.update(dict.fromkeys(arrays, file_path))
    flat.update(arrays)
  try:
    graphdef, abstract = _abstract_model(info.model, dtype)
  except ValueError as e:  # unknown variant, scale, dtype
    raise BundleError(path / INFO_FILE, str(e)) from e
  _check_params(path if info.sharded else path / PARAMS_FILE, flat, abstract, info.model,
                owner)
  return graphdef, unflatten_params(flat, abstract), info


def load_bundle(path: str | os.PathLike, dtype: str = 'float32'
                ) -> tuple[claritynet.ClarityNetSR, BundleInfo]:
  """(model, info): a ready ClarityNetSR with the bundle's parameters."""
  graphdef, params, info = load_params(path, dtype)
  return nnx.merge(graphdef, params), info


def _check_params(path: Path, flat: dict[str, np.ndarray], abstract: Any,
                  spec: ModelSpec, owner: dict[str, Path] | None = None) -> None:
  """Exactly the arrays `spec` expects: a BundleError at `path` (or at the file
  holding a wrong array, `owner[key]`) otherwise."""
  expected = parameters.flat_leaves(abstract)
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
      raise BundleError((owner or {}).get(key, path),
                        f'parameter {key!r} is {array.dtype}{list(array.shape)}, '
                        f'{what} expects {leaf.dtype}{list(leaf.shape)}')
