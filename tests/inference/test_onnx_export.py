"""export --format=onnx: the graphs pass onnx.checker, equal the JAX model on real
frames (with and without the uncertainty head), carry the bundle's metadata, and warp
with GridSample."""

import json

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from clarity_jax.inference import bundle


@pytest.mark.parametrize('head', [False, True])
def test_onnx_equals_jax_on_real_frames(onnx_bundle, tiny_head_model, photo_windows, head):
  out, info = onnx_bundle
  graph = out / 'onnx' / ('restore_uncertainty.onnx' if head else 'restore.onnx')
  proto = onnx.load(str(graph))
  onnx.checker.check_model(proto, full_check=True)
  ops = {n.op_type for n in proto.graph.node}
  assert 'GridSample' in ops and not ops & {'GatherND', 'CumProd'}
  session = ort.InferenceSession(str(graph), providers=['CPUExecutionProvider'])
  m = info.extra['onnx']['size_multiple']
  assert m == 4  # tiny: a 2-level flow pyramid
  model, _ = bundle.load_bundle(tiny_head_model.path)
  for h, w in ((6 * m, 9 * m), (13 * m, 4 * m)):  # two sizes: none baked in
    window = photo_windows(1, h, w)
    got = session.run(None, {'lq': window})
    want = model.with_uncertainty(window) if head else (model(window),)
    assert len(got) == len(want)
    for a, b in zip(got, want):
      assert a.shape == b.shape
      np.testing.assert_allclose(a, np.asarray(b), atol=1e-4)


def test_onnx_metadata_names_the_weights(onnx_bundle):
  out, info = onnx_bundle
  meta = {p.key: p.value for p in onnx.load(str(out / 'onnx' / 'restore.onnx')).metadata_props}
  assert meta['params_sha256'] == info.params_sha256
  assert json.loads(meta['model']) == {'variant': 'tiny', 'scale': 2, 'num_neighbors': 1,
                                       'use_alignment': True, 'use_attention': True,
                                       'uncertainty': True}
  assert (meta['scale'], meta['num_neighbors'], meta['size_multiple']) == ('2', '1', '4')
  assert bundle.read_info(out).extra['onnx']['graphs'] == ['restore.onnx',
                                                           'restore_uncertainty.onnx']
