"""export --format=onnx: the graphs pass onnx.checker, equal the JAX model on real
frames (with and without the uncertainty head), carry the bundle's metadata, and warp
with GridSample; int8 graphs are calibrated on real footage."""

import json
import sys

import cv2
import numpy as np
import pytest

from clarity_jax.inference import bundle
from clarity_jax.inference import export
from clarity_jax.inference import onnx_export
from clarity_jax.inference import restorer

# The extras: ".[onnx]" exports, ".[deploy]" runs; without them these tests skip.
onnx = pytest.importorskip('onnx')
ort = pytest.importorskip('onnxruntime')
pytest.importorskip('jax2onnx')


def test_the_network_cut_after_the_warp_equals_jax(onnx_bundle, tiny_head_model,
                                                  photo_windows):
  """align.onnx then restore_aligned*.onnx (what OpenVINO's bfloat16 runs in two
  precisions) chain to the JAX model, with and without the head."""
  out, _ = onnx_bundle
  model, _ = bundle.load_bundle(tiny_head_model.path)
  window = photo_windows(1, 24, 36)
  align = ort.InferenceSession(str(out / 'onnx' / 'align.onnx'))
  aligned = align.run(None, {'lq': window})[0]
  assert aligned.shape == window.shape
  for graph, want in (('restore_aligned.onnx', (model(window),)),
                      ('restore_aligned_uncertainty.onnx', model.with_uncertainty(window))):
    rest = ort.InferenceSession(str(out / 'onnx' / graph))
    got = rest.run(None, {'aligned': aligned, 'lq': window})
    for a, b in zip(got, want):
      np.testing.assert_allclose(a, np.asarray(b), atol=1e-4)


def test_a_feature_warping_model_is_cut_around_its_warp(onnx_feature_bundle, photo_windows):
  """encode.onnx per frame, align.onnx (flow, each neighbour's features warped), then
  restore_aligned*.onnx chain to the JAX model, features crossing each cut one frame
  at a time, channels first; the whole graph equals it too."""
  out, info = onnx_feature_bundle
  assert info.extra['onnx']['graphs'] == [
      'align.onnx', 'encode.onnx', 'restore.onnx', 'restore_aligned.onnx',
      'restore_aligned_uncertainty.onnx', 'restore_uncertainty.onnx']
  model, _ = bundle.load_bundle(out)
  session = lambda name: ort.InferenceSession(str(out / 'onnx' / name))
  window = photo_windows(1, 24, 36)  # multiples of 4, the graphs' multiple
  encode = session('encode.onnx')
  frames = [encode.run(None, {'frames': window[:, i:i + 1]})[0] for i in range(3)]
  assert frames[0].shape == (1, 8, 24, 36)  # tiny: 8 encoder features
  np.testing.assert_allclose(np.concatenate(frames).transpose(0, 2, 3, 1),
                             np.asarray(model.encode_frames(window[0])), atol=1e-4)
  align = session('align.onnx')
  assert [i.name for i in align.get_inputs()] == ['features_0', 'features_2', 'lq']
  frames[0], frames[2] = align.run(None, {'features_0': frames[0], 'features_2': frames[2],
                                          'lq': window})
  feed = {'features_0': frames[0], 'features_1': frames[1], 'features_2': frames[2],
          'lq': window}
  for graph, want in (('restore_aligned.onnx', (model(window),)),
                      ('restore_aligned_uncertainty.onnx', model.with_uncertainty(window))):
    got = session(graph).run(None, feed)
    for a, b in zip(got, want):
      np.testing.assert_allclose(a, np.asarray(b), atol=1e-4)
  np.testing.assert_allclose(session('restore.onnx').run(None, {'lq': window})[0],
                             np.asarray(model(window)), atol=1e-4)


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
                                       'uncertainty': True, 'warp_features': False}
  assert (meta['scale'], meta['num_neighbors'], meta['size_multiple']) == ('2', '1', '4')
  assert bundle.read_info(out).extra['onnx']['graphs'] == [
      'align.onnx', 'restore.onnx', 'restore_aligned.onnx',
      'restore_aligned_uncertainty.onnx', 'restore_uncertainty.onnx']


@pytest.fixture(scope='module')
def footage(tmp_path_factory, photo_windows):
  """A real 9-frame clip (a photograph panning) as a frame folder, 2x the LQ size."""
  folder = tmp_path_factory.mktemp('footage') / 'pan'
  folder.mkdir()
  for i, frame in enumerate(photo_windows(9, 64, 96)[:, 0]):
    cv2.imwrite(str(folder / f'{i:04d}.png'), cv2.cvtColor(
        np.round(frame * 255).astype(np.uint8), cv2.COLOR_RGB2BGR))
  return folder


def test_calibration_windows_are_lq_windows_of_the_footage(footage):
  windows = onnx_export.calibration_windows([str(footage)], num_frames=3, scale=2,
                                            multiple=8, count=3)
  assert len(windows) == 3
  for window in windows:  # 32x48 LQ frames, already multiples of 8
    assert window.shape == (3, 32, 48, 3) and window.dtype == np.float32
  frame = cv2.cvtColor(cv2.imread(str(footage / '0000.png')), cv2.COLOR_BGR2RGB) / 255.0
  np.testing.assert_allclose(  # area-downscaled, as the model sees low resolution
      windows[0][0], cv2.resize(frame.astype(np.float32), (48, 32),
                                interpolation=cv2.INTER_AREA), atol=1e-6)
  with pytest.raises(bundle.BundleError, match='9 frames: a calibration clip needs at '
                     'least 11'):
    onnx_export.calibration_windows([str(footage)], num_frames=11, scale=2, multiple=8)


def test_int8_graph_is_quantized_and_restores_close_to_float(tiny_model, footage,
                                                            photo_windows, tmp_path):
  pytest.importorskip('nncf')
  pytest.importorskip('openvino')
  out = tmp_path / 'int8'
  info = export.export(None, out, formats=['onnx'], source_bundle=tiny_model.path,
                       int8_calibration=[str(footage)])
  assert info.extra['onnx']['graphs'] == ['align.onnx', 'restore.onnx',
                                          'restore_aligned.onnx', 'restore_int8.onnx']
  proto = onnx.load(str(out / 'onnx' / 'restore_int8.onnx'))
  ops = [n.op_type for n in proto.graph.node]
  assert ops.count('QuantizeLinear') >= 10 and 'Conv' in ops
  meta = {p.key: p.value for p in proto.metadata_props}
  assert meta['params_sha256'] == info.params_sha256
  windows = photo_windows(2, 40, 60)
  floats, _ = restorer.Restorer.from_bundle(out, engine='onnxruntime', tile=0, batch=2)
  int8, _ = restorer.Restorer.from_bundle(out, 'int8', engine='openvino', tile=0, batch=2)
  for a, b in zip(int8(windows), floats(windows)):
    assert a.shape == b.shape == (80, 120, 3)
    assert 0 < np.abs(a - b).mean() < 0.02  # quantized, and near the float graph
  with pytest.raises(restorer.EnhanceError, match='int8 runs on --engine=openvino'):
    restorer.Restorer.from_bundle(out, 'int8')
  with pytest.raises(bundle.BundleError, match='--engine=onnxruntime: computes in float32, '
                     'not int8'):
    restorer.Restorer.from_bundle(out, 'int8', engine='onnxruntime')


def test_a_missing_exporter_names_the_extra(tiny_model, monkeypatch, tmp_path):
  monkeypatch.setitem(sys.modules, 'jax2onnx', None)  # what Python does when absent
  with pytest.raises(bundle.BundleError, match=r'^--format=onnx: needs jax2onnx, which is '
                     r'not installed .*pip install -e "\.\[onnx\]"$'):
    export.export(None, tmp_path / 'out', formats=['onnx'], source_bundle=tiny_model.path)
  assert not (tmp_path / 'out').exists()
