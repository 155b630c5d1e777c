"""enhance's engines: ONNX Runtime and OpenVINO restore the same tiles as JAX (within
1/255), and refuse a bundle without a graph, a graph of other weights, or a missing
runtime in one line."""

import itertools
import re
import shutil
import sys

import cv2
import numpy as np
import pytest

from clarity_jax.inference import bundle
from clarity_jax.inference import engines
from clarity_jax.inference import restorer
from clarity_jax.inference import tiles
from clarity_jax.media import readers


@pytest.mark.parametrize('engine', ['onnxruntime', 'openvino'])
@pytest.mark.parametrize('uncertainty', [False, True])
def test_engine_restores_what_jax_restores(onnx_bundle, photo_windows, engine, uncertainty):
  pytest.importorskip(engine)
  path, _ = onnx_bundle
  # 45x70: neither side a multiple of the graph's 4, and tiles of 32 with overlaps.
  windows = photo_windows(2, 45, 70)
  kw = dict(tile=32, tile_overlap=8, batch=2, uncertainty=uncertainty)
  jax_engine, _ = restorer.Restorer.from_bundle(path, **kw)
  other, _ = restorer.Restorer.from_bundle(path, engine=engine, **kw)
  (want, want_maps), (got, got_maps) = (jax_engine.frames_and_maps(windows),
                                        other.frames_and_maps(windows))
  for a, b in zip(got, want):
    assert a.shape == b.shape == (90, 140, 3)
    assert np.abs(a - b).max() <= 1 / 255
  if uncertainty:  # the error scale b, in [0, 1] image units like the frames
    for a, b in zip(got_maps, want_maps):
      assert a.shape == b.shape == (90, 140)
      np.testing.assert_allclose(a, b, atol=1 / 255)


@pytest.mark.parametrize('engine', ['onnxruntime', 'openvino'])
def test_engine_encodes_each_frame_once(onnx_feature_bundle, photo_windows, engine):
  """A model that warps features: the engine's encoder cache gives what encoding every
  window gives, and both are the JAX engine's frames and maps within 1/255."""
  pytest.importorskip(engine)
  path, _ = onnx_feature_bundle
  clip = list(photo_windows(7, 30, 44)[:, 0])  # 7 consecutive frames of a pan
  kw = dict(tile=24, tile_overlap=8, batch=2, uncertainty=True)
  results = {}
  for name, runtime, cache in (('jax', 'jax', True), ('cached', engine, True),
                               ('uncached', engine, False)):
    r, _ = restorer.Restorer.from_bundle(path, engine=runtime, encoder_cache=cache, **kw)
    results[name] = list(restorer.enhance_frames_and_maps(r, clip))
    if cache:  # each tile of each frame encoded once
      th, tw = r.tile_shape(30, 44)
      assert r.feature_cache.encoded == len(clip) * len(tiles.tile_starts(30, th, 8)) * len(
          tiles.tile_starts(44, tw, 8))
    else:
      assert r.feature_cache is None
  for (_, a, a_map), (_, b, b_map), (_, c, c_map) in zip(
      results['cached'], results['uncached'], results['jax']):
    assert a.shape == c.shape == (60, 88, 3)
    assert np.abs(a - b).max() <= 1e-5 and np.abs(a_map - b_map).max() <= 1e-5
    assert np.abs(a - c).max() <= 1 / 255 and np.abs(a_map - c_map).max() <= 1 / 255


@pytest.mark.parametrize('engine', ['onnxruntime', 'openvino'])
def test_engines_restore_a_real_clip_of_any_size(onnx_feature_bundle, shared_data, engine):
  """Real frames whose sides are no multiple of the graph's (45x70: the engine pads
  them, as the JAX model pads itself), whole: the same pixels, edges included."""
  pytest.importorskip(engine)
  path, _ = onnx_feature_bundle
  street = readers.open_input(shared_data / 'real_lq' / 'street_320x180')
  clip = [f[60:105, 100:170] for f in itertools.islice(next(iter(street.clips.values())), 4)]
  kw = dict(tile=0, batch=2)
  want = [r for _, r in restorer.enhance_frames(restorer.Restorer.from_bundle(path, **kw)[0],
                                                clip)]
  got = [r for _, r in restorer.enhance_frames(
      restorer.Restorer.from_bundle(path, engine=engine, **kw)[0], clip)]
  for a, b in zip(got, want):
    assert a.shape == b.shape == (90, 140, 3)
    assert np.abs(a - b).max() <= 1 / 255


def test_openvino_bfloat16_keeps_the_warp_in_float32(onnx_bundle, photo_windows):
  """bfloat16 runs the network cut after the warp: align.onnx in float32, the rest
  in bfloat16 (on a CPU without bfloat16, OpenVINO computes it in float32, and the
  engine says so in the log)."""
  pytest.importorskip('openvino')
  path, _ = onnx_bundle
  windows = photo_windows(2, 24, 36)
  floats, _ = restorer.Restorer.from_bundle(path, engine='openvino', tile=0, batch=2)
  bf16, _ = restorer.Restorer.from_bundle(path, 'bfloat16', engine='openvino', tile=0,
                                          batch=2)
  assert bf16.engine.graph.name == 'restore_aligned.onnx' and bf16.engine._align
  for a, b in zip(bf16(windows), floats(windows)):
    assert a.shape == b.shape == (48, 72, 3)
    assert np.abs(a - b).mean() < 2 / 255


def test_a_bundle_without_a_graph_is_refused(tiny_model):
  pytest.importorskip('onnxruntime')
  with pytest.raises(bundle.BundleError, match='has no ONNX graph .*--format=onnx'):
    restorer.Restorer.from_bundle(tiny_model.path, engine='onnxruntime')


@pytest.mark.parametrize('engine', ['onnxruntime', 'openvino'])
def test_a_graph_of_another_layout_is_refused(onnx_feature_bundle, tmp_path, engine):
  """An align.onnx whose first input has another name (as the stacked `features` of
  exports before per-frame inputs) is named in one line, before it runs."""
  pytest.importorskip(engine)
  onnx = pytest.importorskip('onnx')
  copy = tmp_path / 'copy'
  shutil.copytree(onnx_feature_bundle[0], copy)
  graph = copy / 'onnx' / 'align.onnx'
  proto = onnx.load(str(graph))
  rename = lambda name: 'features' if name == 'features_0' else name
  for value in proto.graph.input:
    value.name = rename(value.name)
  for node in proto.graph.node:
    node.input[:] = [rename(name) for name in node.input]
  onnx.save(proto, str(graph))
  with pytest.raises(bundle.BundleError, match=re.escape(
      f"{graph}: takes inputs ['features', 'features_2', 'lq'], not ['features_0', "
      "'features_2', 'lq'] (an export of another version): export it again")):
    restorer.Restorer.from_bundle(copy, engine=engine)


def test_a_graph_of_other_weights_is_refused(onnx_bundle, tiny_model, tmp_path):
  pytest.importorskip('onnxruntime')
  other = tmp_path / 'other'
  shutil.copytree(tiny_model.path, other)
  shutil.copytree(onnx_bundle[0] / 'onnx', other / 'onnx')
  with pytest.raises(bundle.BundleError, match='was exported from weights sha256'):
    restorer.Restorer.from_bundle(other, engine='onnxruntime')


@pytest.mark.parametrize('engine', ['onnxruntime', 'openvino'])
def test_a_missing_runtime_names_the_extra(tiny_model, monkeypatch, engine):
  monkeypatch.setitem(sys.modules, engine, None)  # what Python does when absent
  with pytest.raises(bundle.BundleError, match=rf'^--engine={engine}: needs the {engine} '
                     r'package, which is not installed .*pip install -e "\.\[deploy\]"$'):
    engines.OnnxEngine(tiny_model.path, bundle.read_info(tiny_model.path), engine)


def test_enhance_command_on_each_engine(onnx_bundle, photo_windows, run_enhance, tmp_path):
  """The command end to end: a frame folder restored by ONNX Runtime and OpenVINO
  gives the JAX engine's PNGs within one grey level; a precision that failed the
  0.05 dB rule on validate is refused in one line, with no output."""
  pytest.importorskip('openvino')
  frames = tmp_path / 'in'
  frames.mkdir()
  for i, frame in enumerate(photo_windows(4, 30, 44)[:, 0]):
    cv2.imwrite(str(frames / f'{i:03d}.png'),
                cv2.cvtColor(np.round(frame * 255).astype(np.uint8), cv2.COLOR_RGB2BGR))
  outputs = {}
  for engine in ('jax', 'onnxruntime', 'openvino'):
    out = tmp_path / engine
    proc = run_enhance(f'--bundle={onnx_bundle[0]}', f'--input={frames}', f'--output={out}',
                       f'--engine={engine}', '--tile=16', '--tile_overlap=4')
    assert proc.returncode == 0, proc.stderr[-2000:]
    outputs[engine] = [cv2.imread(str(p)).astype(int) for p in sorted(out.glob('*.png'))]
    assert len(outputs[engine]) == 4 and outputs[engine][0].shape == (60, 88, 3)
  for engine in ('onnxruntime', 'openvino'):
    for a, b in zip(outputs[engine], outputs['jax']):
      assert np.abs(a - b).max() <= 1
  proc = run_enhance(f'--bundle={onnx_bundle[0]}', f'--input={frames}',
                     f'--output={tmp_path / "int8"}', '--engine=openvino', '--dtype=int8')
  assert proc.returncode == 1
  assert proc.stderr.strip().splitlines() == [
      'error: --dtype: int8 loses more than 0.05 dB on validate (docs/performance.md, '
      '"Engines"); use float32, or bfloat16 on --engine=openvino']
  assert not (tmp_path / 'int8').exists()
