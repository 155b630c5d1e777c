"""The synthetic camera (synthetic.py) rendered on the device: the default source's
HR windows without a CPU.

On the host, `window_arrays` draws a window's shot as
today and hands over what cv2 would render it from, as small fixed-shape arrays
(`ARRAY_KEYS`): per frame (and per row, when a rolling shutter may read the rows
at their own times) the affine from crop pixels to photo pixels and the one to
the moving object's own frame, the photograph's and the object texture's index
in the photo stack, the object's semi-axes and texture centre, and the window's
flip and quarter turns. `render` draws the frames from the stack, which is placed
on the device once (`photo_stack`).

It is cv2's arithmetic (OpenCV 4.x samples float images at exact positions):
bicubic taps with a = -0.75, reflect-101 borders, the object's soft ellipse
blended over the background, then a clip to [0, 1]. Positions are float32 here,
so frames agree with cv2's to about 4e-5, not to the bit
(tests/data/test_data/on_device/synthetic.py).

The flips and quarter turns of augmentation (examples.augment_window) permute
output pixels: they are applied to the pixel grid the frames are sampled on, so
augmenting costs no pass over the frames.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import cv2
import jax
import jax.numpy as jnp
import numpy as np

from clarity_jax.data import camera_effects
from clarity_jax.data import synthetic

# The keys of an example's camera arrays (prefixed 'cam_' in examples), see the module doc.
ARRAY_KEYS = ('view', 'object', 'photo', 'texture', 'axes', 'texture_centre', 'aug')
_A = -0.75  # cv2's bicubic parameter
PAD = 2  # photo_stack's border: a bicubic tap reaches 2 pixels past a position


def window_arrays(source: synthetic.SyntheticSource, rng: np.random.Generator,
                  readout: float, *, order: np.ndarray, targets: Sequence[int], rows: int
                  ) -> dict[str, np.ndarray]:
  """The window `source.sample_captured(rng, readout)` renders, as the arrays that
  `render` draws it from (ARRAY_KEYS but 'aug'). NumPy, on the host.

  Frames are the captured ones in `order` (a temporal reversal: order[::-1]),
  then the global-shutter frames order[targets] (the training targets, when a
  rolling shutter makes them differ). rows: 1, or the crop height when a
  rolling shutter may read each row at its own time (one affine per row).
  """
  shot, c = source.draw(rng), source.spec.crop
  still = np.concatenate([order, order[list(targets)]])  # frames drawn at one time
  view = np.broadcast_to(shot.views[still][:, None], (len(still), rows, 2, 3))
  obj = np.broadcast_to(synthetic.object_affine(shot.views[still], shot.obj[still])[:, None],
                        view.shape)
  if readout:  # each row of a captured frame at its own time
    view, obj = np.array(view), np.array(obj)
    for i, j in enumerate(order):
      times = shot.times[j] + camera_effects.row_times(c, readout).astype(np.float64)
      view[i] = shot.motion.views(times)
      obj[i] = synthetic.object_affine(view[i], shot.motion.objects(times))
  index = {id(p): i for i, p in enumerate(source.photos)}
  return {'view': view.astype(np.float32), 'object': obj.astype(np.float32),
          'photo': np.asarray(index[id(shot.photo)], np.int32),
          'texture': np.asarray(index[id(shot.texture)], np.int32),
          'axes': shot.axes.astype(np.float32),
          'texture_centre': shot.tex_centre.astype(np.float32)}


def photo_stack(photos: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
  """([N, H_max + 2 PAD, W_max + 2 PAD, 3] uint8, [N, 2] int32 (height, width)) of
  float photographs in [0, 1] that are k / 255 (synthetic.load_photo): uint8 is
  exact and 4x smaller. Photo i's pixel (y, x) is at [i, PAD + y, PAD + x], inside
  a reflect-101 border PAD wide, so that every 4 x 4 bicubic neighbourhood of a
  position inside the photo is one contiguous slice (`_sample`)."""
  h = max(p.shape[0] for p in photos) + 2 * PAD
  w = max(p.shape[1] for p in photos) + 2 * PAD
  stack = np.zeros((len(photos), h, w, 3), np.uint8)
  for i, p in enumerate(photos):
    padded = cv2.copyMakeBorder(p, PAD, PAD, PAD, PAD, cv2.BORDER_REFLECT_101)
    stack[i, :padded.shape[0], :padded.shape[1]] = np.rint(padded * 255.0).astype(np.uint8)
  return stack, np.array([p.shape[:2] for p in photos], np.int32)


def _cubic_weights(f: jax.Array) -> tuple[jax.Array, ...]:
  """cv2's interpolateCubic: the 4 tap weights at fraction f."""
  w0 = ((_A * (f + 1) - 5 * _A) * (f + 1) + 8 * _A) * (f + 1) - 4 * _A
  w1 = ((_A + 2) * f - (_A + 3)) * f * f + 1
  w2 = ((_A + 2) * (1 - f) - (_A + 3)) * (1 - f) * (1 - f) + 1
  return w0, w1, w2, 1.0 - w0 - w1 - w2


def _reflect101(u: jax.Array, n: jax.Array) -> jax.Array:
  """A position u in pixels, however far out, folded into [0, n - 1] as
  cv2.BORDER_REFLECT_101 folds pixel indices (…, 2, 1 | 0, 1, …, n-1 | n-2, …).
  The cubic kernel is even, so sampling the reflected photo at u is sampling the
  photo at the folded u: only the taps next to the edge still reach past it, into
  photo_stack's border."""
  period = jnp.maximum(2 * n - 2, 1).astype(u.dtype)
  u = jnp.mod(u, period)
  return jnp.where(u > n - 1, period - u, u)


def _sample(photos: jax.Array, index: jax.Array, size: jax.Array,
            u: jax.Array, v: jax.Array) -> jax.Array:
  """Bicubic samples [..., 3] of photo `index` of the stack (photo_stack's, [N, H,
  W, 3] uint8), `size` (h, w), at photo pixels (u, v) [...]."""
  u, v = _reflect101(u, size[1]), _reflect101(v, size[0])
  fu, fv = jnp.floor(u), jnp.floor(v)
  wx, wy = jnp.stack(_cubic_weights(u - fu), -1), jnp.stack(_cubic_weights(v - fv), -1)
  n, height, width, _ = photos.shape
  flat = photos.reshape(n * height * width, 3)
  # 16 gathers of a pixel: XLA:CPU runs them faster than one gather of a
  # 4 x 4 x 3 slice per position.
  corner = ((index * height + fv.astype(jnp.int32) + (PAD - 1)) * width
            + fu.astype(jnp.int32) + (PAD - 1))
  out = 0.0
  for i in range(4):
    taps = sum(wx[..., j, None] * jnp.take(flat, corner + (i * width + j), axis=0
                                            ).astype(jnp.float32) for j in range(4))
    out = out + wy[..., i, None] * taps
  return out / 255.0


def _grid(aug: jax.Array, crop: int) -> tuple[jax.Array, jax.Array]:
  """(x, y) [crop, crop] int32: the un-augmented pixel that augmented pixel (row,
  col) shows, for aug = (flip, quarter turns) as examples.augment_window applies
  them (a flip of the columns, then np.rot90)."""
  g = jnp.arange(crop * crop, dtype=jnp.int32).reshape(crop, crop)
  g = jnp.where(aug[0] > 0, g[:, ::-1], g)
  turns = [jnp.rot90(g, k) for k in range(4)]
  g = jnp.select([aug[1] == k for k in range(3)], turns[:3], turns[3])
  return g % crop, g // crop


def _apply(affine: jax.Array, x: jax.Array, y: jax.Array) -> tuple[jax.Array, jax.Array]:
  """affine [..., 2, 3] at pixels (x, y) [...]."""
  return (affine[..., 0, 0] * x + affine[..., 0, 1] * y + affine[..., 0, 2],
          affine[..., 1, 0] * x + affine[..., 1, 1] * y + affine[..., 1, 2])


def _render_one(photos: jax.Array, sizes: jax.Array,
                cam: Mapping[str, jax.Array], crop: int, edge_px: float) -> jax.Array:
  gx, gy = _grid(cam['aug'], crop)
  x, y = gx.astype(jnp.float32), gy.astype(jnp.float32)

  def per_pixel(affines: jax.Array) -> jax.Array:  # [F, R, 2, 3] -> [F, crop, crop, 2, 3]
    if affines.shape[1] == 1:  # one affine per frame: no rolling shutter
      return affines[:, :, None]
    return affines[:, gy]  # each pixel takes its (un-augmented) row's affine

  def layer(index: jax.Array, u: jax.Array, v: jax.Array) -> jax.Array:
    return _sample(photos, index, sizes[index], u, v)

  background = layer(cam['photo'], *_apply(per_pixel(cam['view']), x, y))
  lx, ly = _apply(per_pixel(cam['object']), x, y)
  axes = cam['axes']
  # synthetic._coverage: 1 inside the ellipse, 0 outside, a ramp edge_px wide.
  rho = jnp.sqrt((lx / axes[0]) ** 2 + (ly / axes[1]) ** 2)
  mask = jnp.clip(0.5 - (rho - 1.0) * jnp.min(axes) / edge_px, 0.0, 1.0)[..., None]
  centre = cam['texture_centre']
  obj = layer(cam['texture'], lx + centre[0], ly + centre[1])
  return jnp.clip(background + mask * (obj - background), 0.0, 1.0)


def render(photos: jax.Array, sizes: jax.Array, cam: Mapping[str, jax.Array], crop: int,
           edge_px: float) -> jax.Array:
  """Frames [B, F, crop, crop, 3] float32 in [0, 1] from a batch of camera arrays
  (ARRAY_KEYS, stacked on a leading axis) and the photo stack (photo_stack's
  arrays, on the device). Jittable; crop and edge_px static."""
  photos, sizes = jnp.asarray(photos), jnp.asarray(sizes)
  return jax.vmap(lambda c: _render_one(photos, sizes, c, crop, edge_px))(dict(cam))
