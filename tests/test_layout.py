"""The package's layering, read from the imports of its source files.

cli -> tools -> evaluation -> inference -> train -> {models, data, sharding, metrics}
-> {config, media} -> {errors, files}; no import cycles, lazy imports included. Only data/ imports TensorFlow (the lent accelerator
machines have none), and inference/saved_model.py when a SavedModel is asked for; data never imports models; models and train never reach into
data's modules; nothing imports cli but the `python -m clarity_jax.<command>` shims.
"""

import ast
import pathlib
import subprocess

import pytest

PACKAGE = pathlib.Path(__file__).resolve().parent.parent / 'clarity_jax'
COMMANDS = ('main', 'degrade', 'export', 'enhance', 'evaluate', 'validate', 'benchmark')
# Layer of each top-level part: a module imports its own part or lower layers only.
# train < inference < evaluation follows the data flow (export reads checkpoints,
# evaluation restores with the inference engine); tools compose them (validation
# degrades held-out clips and evaluates on them).
LAYERS = {
    'errors': 0, 'files': 0, 'config': 1, 'media': 1,
    'models': 2, 'data': 2, 'sharding': 2, 'metrics': 2,
    'train': 3, 'inference': 4, 'evaluation': 5, 'tools': 6,
    'cli': 7, **{c: 8 for c in COMMANDS},
}
MAX_LINES = 400


def _modules() -> dict[str, pathlib.Path]:
  out = {}
  for path in sorted(PACKAGE.rglob('*.py')):
    parts = path.relative_to(PACKAGE.parent).with_suffix('').parts
    out['.'.join(p for p in parts if p != '__init__')] = path
  return out


def _import_nodes(path: pathlib.Path) -> list[tuple[ast.AST, bool]]:
  """(import statement, whether it sits inside a function) of a file, at any depth."""
  out = []

  def visit(node: ast.AST, local: bool) -> None:
    for child in ast.iter_child_nodes(node):
      if isinstance(child, (ast.Import, ast.ImportFrom)):
        out.append((child, local))
      visit(child, local or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)))

  visit(ast.parse(path.read_text()), False)
  return out


def _imports(path: pathlib.Path, local_only: bool = False) -> set[str]:
  """Every module a file imports, at any depth (lazy imports count). `from pkg import
  mod` imports pkg.mod (and pkg itself only when it also takes a name of pkg's own)."""
  names = set()
  for node, local in _import_nodes(path):
    if local_only and not local:
      continue
    if isinstance(node, ast.Import):
      names.update(a.name for a in node.names)
    elif isinstance(node, ast.ImportFrom) and node.module:
      if not node.module.startswith('clarity_jax'):
        names.add(node.module)
        continue
      subs = {f'{node.module}.{a.name}' for a in node.names}
      names.update(subs)
      if not subs <= set(MODULES):
        names.add(node.module)
  return names


def _part(module: str) -> str:
  return module.split('.')[1] if '.' in module else ''


MODULES = _modules()
# Function-local imports of the package's own modules: each defers an optional heavy
# dependency (TensorFlow, an export engine) or breaks a layer for a reason it states.
MAX_LOCAL_IMPORTS = 20
RESTORING = tuple(f'clarity_jax.inference.{m}' for m in ('bundle', 'enhance', 'restorer'))


def _internal_imports(module: str) -> set[str]:
  return {n for n in _imports(MODULES[module])
          if n.startswith('clarity_jax.') and n in MODULES}


@pytest.mark.parametrize('module', sorted(MODULES))
def test_module_imports_only_lower_layers(module):
  part = _part(module)
  if part not in LAYERS:
    assert module == 'clarity_jax', f'{module}: not a part of the layout; add it to LAYERS'
    return
  for name in _internal_imports(module):
    other = _part(name)
    assert LAYERS[other] <= LAYERS[part], f'{module} imports {name} ({other} is above {part})'
    if other != part and part not in COMMANDS:
      assert LAYERS[other] < LAYERS[part], (
          f'{module} imports {name}: {part} and {other} are on the same layer')


@pytest.mark.parametrize('module', sorted(MODULES))
def test_only_data_imports_tensorflow(module):
  tf = {n for n in _imports(MODULES[module]) if n.split('.')[0] in ('tensorflow',
                                                                     'tensorflow_datasets')}
  if _part(module) == 'data' or module == 'clarity_jax.inference.saved_model':
    return  # the SavedModel export (jax2tf) imports TensorFlow when asked for
  assert not tf, f'{module} imports {sorted(tf)}: only clarity_jax.data may'


@pytest.mark.parametrize('module', [m for m in sorted(MODULES)
                                    if _part(m) in ('models', 'train')])
def test_models_and_train_use_data_only_through_its_package(module):
  inside = {n for n in _internal_imports(module)
            if n.startswith('clarity_jax.data.') and n != 'clarity_jax.data.on_device'}
  assert not inside, (f'{module} reaches into {sorted(inside)}; use clarity_jax.data '
                      'or clarity_jax.data.on_device')


@pytest.mark.parametrize('module', [m for m in sorted(MODULES)
                                    if _part(m) in ('inference', 'evaluation', 'media')])
def test_inference_and_evaluation_never_import_training_data(module):
  """They read and write footage through media/; restoring loads weights without
  train/ (export and warm starts read training checkpoints, and may)."""
  banned = {n for n in _internal_imports(module) if _part(n) == 'data'}
  if _part(module) == 'media' or module in RESTORING:
    banned |= {n for n in _internal_imports(module) if _part(n) == 'train'}
  assert not banned, f'{module} imports {sorted(banned)}'


def test_no_import_cycles():
  """Depth-first over every import of the package's own modules, lazy ones too."""
  graph = {m: _internal_imports(m) - {m} for m in MODULES}
  state: dict[str, int] = {}  # 1: on the current path, 2: done
  path: list[str] = []

  def visit(module: str) -> None:
    state[module] = 1
    path.append(module)
    for other in sorted(graph[module]):
      if state.get(other) == 1:
        cycle = path[path.index(other):] + [other]
        pytest.fail('import cycle: ' + ' -> '.join(cycle))
      if other not in state:
        visit(other)
    path.pop()
    state[module] = 2

  for module in sorted(graph):
    if module not in state:
      visit(module)


def test_few_function_local_imports_of_the_package():
  local = {m: n for m, p in MODULES.items()
           if (n := len({i for i in _imports(p, local_only=True) if i in MODULES}))}
  assert sum(local.values()) <= MAX_LOCAL_IMPORTS, (
      f'{sum(local.values())} function-local imports of clarity_jax modules: {local}')


@pytest.mark.parametrize('module', [m for m in sorted(MODULES) if _part(m) == 'data'])
def test_data_never_imports_models(module):
  assert not {n for n in _internal_imports(module) if _part(n) in ('models', 'train')}


def test_nothing_but_the_command_shims_imports_cli():
  for module in MODULES:
    if _part(module) in ('cli', *COMMANDS):
      continue
    assert not {n for n in _internal_imports(module) if _part(n) == 'cli'}, module


def test_no_module_is_over_400_lines():
  long = {m: n for m, p in MODULES.items()
          if (n := len(p.read_text().splitlines())) > MAX_LINES}
  assert not long, f'modules over {MAX_LINES} lines: {long}'


def test_everything_but_data_imports_without_tensorflow(script, command_env):
  """What the accelerator machines run imports with TensorFlow blocked."""
  modules = [m for m in MODULES if _part(m) not in ('data', 'cli', *COMMANDS)]
  subprocess.run(script('without_tensorflow', '--import', *modules), env=command_env,
                 check=True)
