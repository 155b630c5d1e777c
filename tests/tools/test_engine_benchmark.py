"""benchmark --what=engines: each row has the fields the table needs, measured in a
process pinned to the row's cores. On the shipped model, whose ONNX graphs ship with
it (no export step to wait for)."""

import pytest

from clarity_jax.inference import shipped
from clarity_jax.tools import engine_benchmark


def test_a_row_is_timed_in_a_process_pinned_to_its_cores():
  pytest.importorskip('openvino')
  row = engine_benchmark._run_pinned(dict(  # pylint: disable=protected-access
      bundle=str(shipped.bundle_path()), engine='openvino', precision='bfloat16', threads=1,
      height=16, width=24, steps=1, warmup=1))
  assert set(row) >= {'engine', 'precision', 'threads', 'encoder_cache', 'ms_per_frame'}
  assert (row['engine'], row['precision'], row['threads']) == ('openvino', 'bfloat16', 1)
  assert row['encoder_cache'] is False and row['ms_per_frame'] > 0
  assert row['output'] == [64, 96]  # x4


@pytest.mark.parametrize('engine', ['jax', 'onnxruntime'])
@pytest.mark.parametrize('cache', [False, True])
def test_rows_in_this_process(engine, cache):
  """The shipped model warps features: rows with and without its encoder cache."""
  pytest.importorskip('onnxruntime' if engine == 'onnxruntime' else 'jax')
  row = engine_benchmark.one_row(str(shipped.bundle_path()), engine, 'float32', threads=2,
                                 height=16, width=24, steps=1, warmup=0,
                                 encoder_cache=cache)
  assert row['engine'] == engine and row['input'] == [16, 24] and row['ms_per_frame'] > 0
  assert row['encoder_cache'] is cache
