"""Seeded training examples, without TensorFlow.

Every example is a pure function of (seed, global example index): its random
stream is np.random.SeedSequence([seed, index]). Both loaders (pipeline.py:
tf.data; loader.py: threads) take the examples and their shapes from here, and
which indices this host makes from host_stream.py: their batches are the same bytes.

An example: the source's HR window (clip, centre frame and an aligned random crop)
-> flips, 90-degree rotations, temporal reversal -> degradations.degrade_window
(eq. 1, coherent over the window) -> {'lq', 'hr'} (+ {'lq_next', 'hr_next'}, the
window one frame later, cut from the same 2K + 2 degraded frames, when the
temporal loss is on). A window drawn with a rolling shutter is degraded from the
synthetic camera's exact render of it (the targets stay global-shutter frames),
or from camera_effects.py's blend for sources of real footage.

With config.degradation.where == 'device' the accelerator degrades
(data/on_device/degradations.py): an example then carries the HR window and its degradation
parameters as fixed-shape arrays instead of the degraded frames, and the CRF of the
video codec for the windows drawn for it: no codec runs on an accelerator, so
train/feed.py returns those windows to the host after the rest of eq. (1) and
compresses them there (see `ExampleMaker`). On the synthetic camera (the default
source) the device renders the window too: the example carries the shot and the
augmentation (data/on_device/synthetic.py) instead of frames, and the host draws numbers only.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any

import jax
import ml_collections
import numpy as np

from clarity_jax.data import degradations
from clarity_jax.data import source_base
from clarity_jax.data import sources
from clarity_jax.data.on_device import camera_effects as jax_camera_effects
from clarity_jax.data.on_device import degradations as jax_degradations
from clarity_jax.data.on_device import synthetic as jax_synthetic
from clarity_jax import errors

# Evaluation windows are drawn and degraded with this seed, not config.seed, so that
# every run (any seed, any resumption) is scored on the same examples.
EVAL_SEED = 2026_11_23
WHERE = ('auto', 'host', 'device')

# (shape, dtype) of one example's array.
Spec = tuple[tuple[int, ...], np.dtype]
_TINY = np.finfo(np.float32).tiny  # the smallest normal float32


def window_spec(config: ml_collections.ConfigDict, temporal: bool) -> source_base.WindowSpec:
  """2K + 1 frames (2K + 2 with the next window), HR crop s * c, origin aligned to s."""
  frames = 2 * config.num_neighbors + 1 + int(temporal)
  return source_base.WindowSpec(frames, config.scale * config.data.crop_size, config.scale)


def draw_augmentation(rng: np.random.Generator) -> tuple[bool, int, bool]:
  """(flip, quarter turns, temporal reversal) of augment_window."""
  return rng.random() < 0.5, int(rng.integers(4)), rng.random() < 0.5


def augment_window(hr: np.ndarray, rng: np.random.Generator) -> np.ndarray:
  """A random element of the 8 flips/rotations (square crops) and a temporal reversal.

  The same transform applies to every frame, so motion between frames stays
  physical. The rng is consumed identically whatever the outcome.
  """
  flip, k, reverse = draw_augmentation(rng)
  if flip:
    hr = hr[:, :, ::-1]
  if hr.shape[1] == hr.shape[2]:
    hr = np.rot90(hr, k, axes=(1, 2))
  if reverse:
    hr = hr[::-1]
  return np.ascontiguousarray(hr)


def degrade_on(config: ml_collections.ConfigDict) -> str:
  """Where eq. (1) runs: config.degradation.where, 'auto' resolved to 'device' on
  GPUs and TPUs and 'host' on CPUs.

  Measured (docs/performance.md): on the 2-core CPU the JAX path costs more CPU
  than the NumPy one (the "device" is the same cores, and OpenCV's warps and blur
  beat XLA:CPU's gathers and FFT); on accelerators the host cannot keep up with
  the step.
  """
  value = config.degradation.get('where', 'host')
  if value not in WHERE:
    raise errors.ConfigError(f'config.degradation.where: {value!r} is not one of {WHERE}')
  if value == 'auto':
    return 'host' if jax.default_backend() == 'cpu' else 'device'
  return value


def _flush_subnormals(v: np.ndarray) -> np.ndarray:
  """Subnormal floats -> 0: the value tf.data's threads compute (flush-to-zero mode).

  TensorFlow runs tf.numpy_function with the CPU flushing subnormals, e.g. a
  Gaussian kernel's far taps (exp(-90) in float64, 1e-39 as float32) become 0
  there and not in a plain thread; flushing them here makes an example the same
  bytes under either loader. Accelerators flush them anyway.
  """
  if v.dtype.kind != 'f':
    return v
  subnormal = (np.abs(v) < _TINY) & (v != 0)
  return np.where(subnormal, np.zeros((), v.dtype), v) if subnormal.any() else v


def _device_arrays(params: dict[str, Any], cfg: Any) -> dict[str, np.ndarray]:
  """jax_degradations.window_arrays, keys prefixed 'deg_'.

  The kernel side is the one that holds every kernel cfg can draw: motion paths
  reach past kernel_size_range[1] (29 pixels for the default config's 21).
  """
  arrays = jax_degradations.window_arrays(
      params, kernel_size=jax_degradations.max_kernel_size(cfg),
      camera_effects=jax_camera_effects.enabled(cfg))
  # np.asarray, not np.ascontiguousarray: that one makes scalars 1-d.
  return {f'deg_{key}': np.asarray(v, order='C') for key, v in arrays.items()}


@dataclasses.dataclass(frozen=True)
class ExampleMaker:
  """(global example index) -> one example; everything else is fixed at construction.

  With `device`, an example holds, besides 'lq' / 'hr' (/ 'lq_next' / 'hr_next'):
  'hr' (+ 'hr_next'), 'hr_window' (the augmented HR window, all T' frames, as
  captured: through the synthetic camera's rolling shutter when it renders one),
  'index' (uint32, the global example index, from which the device derives its
  noise), the window's degradation parameters as jax_degradations.window_arrays
  (keys prefixed 'deg_'), drawn from the same rng stream as the host path, and
  'codec_crf' (int32): the x264 CRF of a window drawn for the video codec, -1 for
  the others. No 'lq': the host degrades nothing. Every example has the same keys
  and shapes.

  With `camera` (device mode on the synthetic source) 'hr', 'hr_next' and
  'hr_window' give way to the shot's arrays, prefixed 'cam_'
  (jax_synthetic.window_arrays, and 'cam_aug': flip and quarter
  turns; a temporal reversal is already in the frames' order): the device renders
  the frames (jax_synthetic.render).
  """
  source: source_base.Source
  seed: int
  num_neighbors: int
  scale: int
  degradation: Any
  augment: bool
  temporal: bool
  device: bool = False
  camera: bool = False

  @property
  def keys(self) -> tuple[str, ...]:
    return tuple(self.spec)

  @functools.cached_property
  def spec(self) -> dict[str, Spec]:
    """(shape, dtype) of every key of an example, in order: what tf.data declares."""
    return _spec(self.source.spec, self.num_neighbors, self.scale, self.temporal,
                 self.device, self.degradation, self.camera)

  def rngs(self, index: int) -> tuple[np.random.Generator, ...]:
    """(source, augmentation, degradation) generators of example `index`.

    Independent streams per stage: e.g. a source drawing one more number does not
    change the degradation of the same example.
    """
    seq = np.random.SeedSequence([self.seed, int(index)])
    return tuple(np.random.default_rng(s) for s in seq.spawn(3))

  def __call__(self, index: int) -> dict[str, np.ndarray]:
    source_rng, augment_rng, degrade_rng = self.rngs(index)
    # The same draws in both modes: parameters first, then the noise realisations
    # (the stages' streams are independent: drawing them before the window changes nothing).
    params = degradations.sample_window_params(degrade_rng, self.degradation,
                                               self.source.spec.num_frames, self.scale)
    if self.camera:
      return self._camera_example(index, source_rng, augment_rng, params)
    hr, captured, params = self._capture(source_rng, params)
    if self.augment:
      rendered = captured is not hr
      hr = augment_window(hr, augment_rng)
      # The same transform: a fresh augmentation stream draws the same numbers.
      captured = augment_window(captured, self.rngs(index)[1]) if rendered else hr
    k, t = self.num_neighbors, 2 * self.num_neighbors + 1
    example = {'hr': hr[k]}
    if self.temporal:
      example['hr_next'] = hr[k + 1]
    if not self.device:
      lq = degradations.apply_window(captured, params, self.scale, degrade_rng)
      example['lq'] = lq[:t]
      if self.temporal:
        example['lq_next'] = lq[1:t + 1]
    example = {key: np.ascontiguousarray(v, dtype=np.float32) for key, v in example.items()}
    if self.device:
      example['hr_window'] = np.ascontiguousarray(captured, dtype=np.float32)
      return self._device_example(example, index, params)
    return {key: _flush_subnormals(v) for key, v in example.items()}

  def _device_example(self, example: dict[str, np.ndarray], index: int,
                      params: dict[str, Any]) -> dict[str, np.ndarray]:
    """`example` + the window's index, codec CRF and degradation arrays, checked."""
    video = params['video']
    example.update(index=np.asarray(int(index) % 2**32, np.uint32),  # wraps past 2^32
                   codec_crf=np.asarray(-1 if video is None else video['crf'], np.int32))
    example.update(_device_arrays(params, self.degradation))
    self._check(example)
    return {key: _flush_subnormals(v) for key, v in example.items()}

  def _camera_example(self, index: int, source_rng: np.random.Generator,
                      augment_rng: np.random.Generator, params: dict[str, Any]
                      ) -> dict[str, np.ndarray]:
    """Device mode on the synthetic camera: the window as jax_synthetic.render draws
    it on the device (the same shot, augmentation and parameters as the host path's
    example `index`), not its frames."""
    flip, k, reverse = draw_augmentation(augment_rng) if self.augment else (False, 0, False)
    shutter = params.get('rolling_shutter')
    frames = self.source.spec.num_frames
    order = np.arange(frames)[::-1] if reverse else np.arange(frames)
    rolling = _rolling(self.degradation)
    targets = [self.num_neighbors, self.num_neighbors + 1][:1 + self.temporal] if rolling else []
    cam = jax_synthetic.window_arrays(self.source, source_rng,
                                      shutter['readout'] if shutter else 0.0, order=order,
                                      targets=targets,
                                      rows=self.source.spec.crop if rolling else 1)
    if shutter is not None:  # rendered into the frames: nothing left to blend
      params = dict(params, rolling_shutter=dict(shutter, method='rendered'))
    cam['aug'] = np.array([flip, k], np.int32)
    return self._device_example({f'cam_{key}': v for key, v in cam.items()}, index, params)

  def _capture(self, rng: np.random.Generator, params: dict[str, Any]
               ) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    """(HR window, the window as the camera captured it, params).

    The same window twice, unless the window has a rolling shutter and the source
    renders it exactly (synthetic.SyntheticSource.sample_captured, whose motion is
    known): the LQ then comes from that capture, the HR targets from the global
    shutter's frames, and the parameters say 'rendered' (nothing left to blend).
    """
    shutter = params.get('rolling_shutter')
    render = getattr(self.source, 'sample_captured', None)
    if shutter is None or render is None:
      hr = self.source.sample(rng)
      return hr, hr, params
    hr, captured = render(rng, shutter['readout'])
    return hr, captured, dict(params, rolling_shutter=dict(shutter, method='rendered'))

  def _check(self, example: dict[str, np.ndarray]) -> None:
    # tf.numpy_function and batching need every example to match the declared spec.
    for key, (shape, dtype) in self.spec.items():
      value = example[key]
      if value.shape != shape or value.dtype != dtype:
        raise ValueError(f'example key {key!r}: {value.dtype}{list(value.shape)}, expected '
                         f'{dtype}{list(shape)} (window_arrays must have fixed shapes)')


def _rolling(degradation: Any) -> bool:
  """Whether windows may have a rolling shutter (then the device camera renders
  each row at its own time, and the targets apart)."""
  return degradation.get('rolling_shutter_prob', 0.0) > 0


def _spec(window: source_base.WindowSpec, num_neighbors: int, scale: int, temporal: bool,
          device: bool, degradation: Any, camera: bool = False) -> dict[str, Spec]:
  """The keys of an example and their (shape, dtype); see ExampleMaker."""
  f32, i32 = np.dtype(np.float32), np.dtype(np.int32)
  t, hr_side = 2 * num_neighbors + 1, window.crop
  lq = ((t, hr_side // scale, hr_side // scale, 3), f32)
  hr = ((hr_side, hr_side, 3), f32)
  if not device:
    return {'lq': lq, 'hr': hr, **({'lq_next': lq, 'hr_next': hr} if temporal else {})}
  frames = window.num_frames
  ids = {'index': ((), np.dtype(np.uint32)), 'codec_crf': ((), i32)}
  if camera:
    rolling = _rolling(degradation)
    rendered = frames + (1 + temporal) * rolling
    affines = ((rendered, hr_side if rolling else 1, 2, 3), f32)
    out = {'cam_view': affines, 'cam_object': affines, 'cam_photo': ((), i32),
           'cam_texture': ((), i32), 'cam_axes': ((2,), f32),
           'cam_texture_centre': ((2,), f32), 'cam_aug': ((2,), i32), **ids}
  else:
    out = {'hr': hr, **({'hr_next': hr} if temporal else {}),
           'hr_window': ((frames, hr_side, hr_side, 3), f32), **ids}
  # window_arrays has fixed shapes whatever the parameters: any draw shows them.
  params = degradations.sample_window_params(
      np.random.default_rng(0), degradation, frames, scale)
  arrays = _device_arrays(params, degradation)
  out.update({key: (v.shape, v.dtype) for key, v in arrays.items()})
  return out


def example_spec(config: ml_collections.ConfigDict) -> dict[str, Spec]:
  """(shape, dtype) of every key of a training example, from the config alone (no
  source is opened): what the train step is compiled for."""
  temporal = config.loss.temporal_weight > 0
  device = degrade_on(config) == 'device'
  return _spec(window_spec(config, temporal), config.num_neighbors, config.scale, temporal,
               device, config.degradation, device_camera(config))


def train_maker(config: ml_collections.ConfigDict) -> ExampleMaker:
  """The training examples: config.seed, augmentation, the temporal window if needed."""
  temporal = config.loss.temporal_weight > 0
  return ExampleMaker(sources.make_source(config, window_spec(config, temporal)),
                      seed=config.seed, num_neighbors=config.num_neighbors,
                      scale=config.scale, degradation=config.degradation,
                      augment=config.data.augment, temporal=temporal,
                      device=degrade_on(config) == 'device', camera=device_camera(config))


def device_camera(config: ml_collections.ConfigDict) -> bool:
  """Whether the device renders the training windows too: eq. (1) on the device
  and the synthetic camera as the source (data/on_device/synthetic.py)."""
  return degrade_on(config) == 'device' and config.data.source == 'synthetic'


def eval_maker(config: ml_collections.ConfigDict) -> ExampleMaker:
  """Held-out examples: config.data.val_path when set, else the validation photographs.

  No augmentation; windows and degradations drawn with EVAL_SEED, and always
  degraded on the host, so that runs are scored on the same windows wherever
  they degrade their training data.
  """
  return ExampleMaker(sources.make_source(config, window_spec(config, False),
                                          split='validation'),
                      seed=EVAL_SEED, num_neighbors=config.num_neighbors, scale=config.scale,
                      degradation=config.degradation, augment=False, temporal=False)
