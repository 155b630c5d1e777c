"""benchmark --what=engines: each row has the fields the table needs, measured in a
process pinned to the row's cores."""

import pytest

from clarity_jax.inference import bundle
from clarity_jax.inference import export
from clarity_jax.tools import engine_benchmark


@pytest.fixture(scope='module')
def onnx_bundle(tmp_path_factory, random_params):
  """A random tiny x2 K=1 bundle with its ONNX graph: (path, BundleInfo); skips
  where the extras ".[onnx]" and ".[deploy]" are not installed."""
  for module in ('jax2onnx', 'onnx', 'onnxruntime', 'openvino'):
    pytest.importorskip(module)
  spec = bundle.ModelSpec('tiny', scale=2, num_neighbors=1)
  _, params = random_params(spec, seed=3)
  root = tmp_path_factory.mktemp('engines')
  bundle.save_bundle(root / 'plain', spec, params, step=0)
  return root / 'onnx', export.export(None, root / 'onnx', formats=['onnx'],
                                      source_bundle=root / 'plain')


def test_a_row_is_timed_in_a_process_pinned_to_its_cores(onnx_bundle):
  row = engine_benchmark._run_pinned(dict(  # pylint: disable=protected-access
      bundle=str(onnx_bundle[0]), engine='openvino', precision='float32', threads=1,
      height=16, width=24, steps=1, warmup=1))
  assert set(row) >= {'engine', 'precision', 'threads', 'encoder_cache', 'ms_per_frame'}
  assert (row['engine'], row['precision'], row['threads']) == ('openvino', 'float32', 1)
  assert row['encoder_cache'] is False and row['ms_per_frame'] > 0
  assert row['output'] == [32, 48]  # tiny x2


def test_rows_in_this_process_for_jax_and_onnxruntime(onnx_bundle):
  for engine in ('jax', 'onnxruntime'):
    row = engine_benchmark.one_row(str(onnx_bundle[0]), engine, 'float32', threads=2,
                                   height=16, width=24, steps=1, warmup=0)
    assert row['engine'] == engine and row['input'] == [16, 24] and row['ms_per_frame'] > 0
