"""The default training source: still photographs seen by a synthetic moving camera.

skimage.data photographs (embedded, offline) animated by a smooth camera path and
crossed by an independently moving object, so that motion is never global. A
window is a pure function of the rng state, like every source's (source_base.py).
"""

from __future__ import annotations

import dataclasses
import functools
import warnings

import cv2
import numpy as np

from clarity_jax.data import camera_effects
from clarity_jax.data import source_base
from clarity_jax.media import temporal

# Fixed split of the embedded photographs: validation (and evaluation) scenes are never
# used for training. Both stereo views of the motorcycle stay on the same side.
TRAIN_PHOTOS = ('astronaut', 'chelsea', 'brick', 'grass', 'gravel', 'camera', 'coins',
                'clock', 'immunohistochemistry', 'moon', 'hubble_deep_field', 'text',
                'page')
VALIDATION_PHOTOS = ('coffee', 'rocket', 'motorcycle_left', 'motorcycle_right')
PHOTO_SPLITS = {'train': TRAIN_PHOTOS, 'validation': VALIDATION_PHOTOS}


@functools.cache
def load_photo(name: str) -> np.ndarray:
  """An skimage.data photograph as float32 RGB [H, W, 3] in [0, 1] (gray -> RGB)."""
  import skimage.data  # pylint: disable=g-import-not-at-top
  if name in ('motorcycle_left', 'motorcycle_right'):
    img = skimage.data.stereo_motorcycle()[0 if name == 'motorcycle_left' else 1]
  else:
    img = getattr(skimage.data, name)()
  if img.ndim == 2:
    img = np.repeat(img[..., None], 3, axis=-1)
  img = np.ascontiguousarray(img[..., :3], dtype=np.float32) / 255.0
  img.setflags(write=False)
  return img


def load_photos(split: str) -> dict[str, np.ndarray]:
  """The photographs of one split ('train' or 'validation') of `PHOTO_SPLITS`."""
  if split not in PHOTO_SPLITS:
    raise ValueError(f'unknown photo split {split!r}; one of {list(PHOTO_SPLITS)}')
  return {name: load_photo(name) for name in PHOTO_SPLITS[split]}


@dataclasses.dataclass(frozen=True)
class SmoothPath:
  """offset + velocity * t + sum_k amp_k sin(2 pi freq_k t / length + phase_k), per channel.

  Low-frequency sinusoids over a drift: smooth, bounded, and exactly evaluable at any
  frame, so a window renders without simulating the frames before it.
  """
  offset: np.ndarray  # [D]
  velocity: np.ndarray  # [D], per frame
  amp: np.ndarray  # [N, D]
  freq: np.ndarray  # [N, D], cycles per clip
  phase: np.ndarray  # [N, D]
  length: int

  def __call__(self, t: np.ndarray) -> np.ndarray:
    """Values at frames t (relative to the clip centre): [len(t), D]."""
    t = np.asarray(t, np.float64)[:, None, None]
    waves = self.amp * np.sin(2 * np.pi * self.freq * t / self.length + self.phase)
    return self.offset + self.velocity * t[:, 0] + waves.sum(axis=1)

  @classmethod
  def random(cls, rng: np.random.Generator, length: int, offset, speed, amp,
             freq=(0.2, 2.0), terms: int = 2) -> 'SmoothPath':
    offset = np.asarray(offset, np.float64)
    d = offset.size
    return cls(offset=offset,
               velocity=rng.uniform(-1, 1, d) * np.asarray(speed, np.float64),
               amp=rng.uniform(0, 1, (terms, d)) * np.asarray(amp, np.float64) / terms,
               freq=rng.uniform(*freq, (terms, d)),
               phase=rng.uniform(0, 2 * np.pi, (terms, d)),
               length=length)


def _rotation(theta: float | np.ndarray) -> np.ndarray:
  """[..., 2, 2] rotation matrices of angles theta [...]."""
  c, s = np.cos(theta), np.sin(theta)
  return np.stack([np.stack([c, -s], -1), np.stack([s, c], -1)], -2)


def _views(log_zoom: np.ndarray, theta: np.ndarray, shift: np.ndarray, crop: int
           ) -> np.ndarray:
  """[N, 2, 3] affines, crop pixel -> photo pixel: the crop centre lands on shift[i],
  rotated by theta[i] and covering exp(log_zoom[i]) photo pixels per crop pixel.

  Vectorised: a rolling shutter needs one per row of every frame.
  """
  linear = np.exp(log_zoom)[:, None, None] * _rotation(theta)
  centre = np.full(2, (crop - 1) / 2)
  return np.concatenate([linear, (shift - linear @ centre)[..., None]], axis=2)


def soft_ellipse(to_local: np.ndarray, axes: np.ndarray, edge_px: float,
                 shape: tuple[int, int]) -> np.ndarray:
  """Coverage [h, w] of an ellipse: 1 inside, 0 outside, a ramp `edge_px` wide.

  `to_local` (2x3) maps pixel (x, y) to the ellipse's own frame, where its
  semi-axes `axes` lie along x and y.
  """
  ys, xs = np.mgrid[0:shape[0], 0:shape[1]].astype(np.float32)
  lx = to_local[0, 0] * xs + to_local[0, 1] * ys + to_local[0, 2]
  ly = to_local[1, 0] * xs + to_local[1, 1] * ys + to_local[1, 2]
  return _coverage(lx, ly, axes, edge_px)


def _coverage(lx: np.ndarray, ly: np.ndarray, axes: np.ndarray, edge_px: float) -> np.ndarray:
  rho = np.sqrt((lx / axes[0]) ** 2 + (ly / axes[1]) ** 2)
  return np.clip(0.5 - (rho - 1.0) * axes.min() / edge_px, 0.0, 1.0)


def _row_maps(affines: np.ndarray, x0: int, y0: int, shape: tuple[int, int]
              ) -> tuple[np.ndarray, np.ndarray]:
  """(x, y) maps [h, w] of pixel (x0 + x, y0 + y) through affines[y] (2x3, one per row)."""
  xs = np.arange(x0, x0 + shape[1], dtype=np.float64)[None]
  ys = np.arange(y0, y0 + shape[0], dtype=np.float64)[:, None]
  a = affines[:, :, :, None]  # [h, 2, 3, 1]
  u, v = (a[:, i, 0] * xs + a[:, i, 1] * ys + a[:, i, 2] for i in (0, 1))
  return u, v


def _remap(img: np.ndarray, u: np.ndarray, v: np.ndarray) -> np.ndarray:
  """img at (u, v), bicubic, reflect-101: render's cv2.warpAffine, for any maps."""
  return cv2.remap(img, u.astype(np.float32), v.astype(np.float32), cv2.INTER_CUBIC,
                   borderMode=cv2.BORDER_REFLECT_101)


def _zeros2() -> dataclasses.Field:
  return dataclasses.field(default_factory=lambda: np.zeros(2))


@dataclasses.dataclass(frozen=True)
class Motion:
  """A shot's camera and object paths, evaluable at any clip time, not only at frames:
  what an exact rolling shutter needs (each row at its own time).

  draw computes a shot's views and obj with views(times) and objects(times), so
  between frames they continue exactly the motion the frames show.
  """
  pan: SmoothPath  # photo px
  turn: SmoothPath  # (rotation rad, log zoom)
  zoom_min: float  # log zoom minus this plus zoom_base: zoom only ever shrinks
  zoom_base: float
  crop: int
  placement: np.ndarray = _zeros2()  # [2] photo px added to every view's translation
  obj_path: SmoothPath | None = None  # (x, y, rotation) about the object's drift
  obj_speed: float = 0.0  # photo px per frame
  obj_heading: np.ndarray = _zeros2()  # [2] unit vector
  obj_shift: np.ndarray = _zeros2()  # [2] photo px: the object's anchor in the scene

  def views(self, times: np.ndarray) -> np.ndarray:
    """[N, 2, 3] affines, crop pixel -> photo pixel, at clip times (centred on the clip)."""
    camera = np.concatenate([self.pan(times), self.turn(times)], axis=1)
    log_zoom = camera[:, 3] - self.zoom_min + self.zoom_base
    views = _views(log_zoom, camera[:, 2], camera[:, :2], self.crop)
    views[:, :, 2] += self.placement
    return views

  def objects(self, times: np.ndarray) -> np.ndarray:
    """[N, 3] the object's centre (x, y), photo px, and rotation at clip times."""
    obj = self.obj_path(times)
    obj[:, :2] += self.obj_speed * np.outer(times, self.obj_heading)
    obj[:, :2] += self.obj_shift
    return obj


@dataclasses.dataclass(frozen=True)
class Shot:
  """What one window shows, drawn from the rng: `SyntheticSource.render` draws no
  numbers, so the same shot always renders the same frames.

  Attributes:
    photo: the background photograph.
    views: [T, 2, 3] affines, crop pixel -> photo pixel, one per frame.
    texture: the photograph the object is cut from.
    tex_centre: (x, y) texture pixel at the object's centre.
    axes: the object's ellipse semi-axes, in scene (photo) pixels.
    obj: [T, 3] the object's centre (x, y), photo pixels, and rotation (rad).
    times: [T] the frames' clip times (centred on the clip's middle frame).
    motion: the paths behind views and obj, for times between frames.
  """
  photo: np.ndarray
  views: np.ndarray
  texture: np.ndarray
  tex_centre: np.ndarray
  axes: np.ndarray
  obj: np.ndarray
  times: np.ndarray | None = None
  motion: Motion | None = None

  def to_object(self, j: int) -> np.ndarray:
    """2x3 affine, crop pixel of frame j -> object-local pixel (its position and
    rotation undone): where `soft_ellipse` and the texture are evaluated."""
    view, obj = self.views[j], self.obj[j]
    return object_affine(view, obj)


def object_affine(view: np.ndarray, obj: np.ndarray) -> np.ndarray:
  """2x3 (or [N, 2, 3] for [N, ...] inputs), crop pixel -> object-local pixel, of a
  view (crop pixel -> photo pixel) and the object's (x, y, rotation)."""
  return _rotation(-obj[..., 2]) @ np.concatenate(
      [view[..., :2], (view[..., 2] - obj[..., :2])[..., None]], axis=-1)


class SyntheticSource(source_base.Source):
  """Photographs seen by a moving camera, with an independently moving object.

  Camera: a smooth path of pan (a random drift up to `max_pan` HR px/frame plus
  shake), slower rotation and zoom; the view maps crop pixels to photo pixels. The
  zoom only ever shrinks (1 to about 1.25 photo pixels per output pixel), so frames
  stay as sharp as the photograph. Object: a soft-edged ellipse of texture from a
  (possibly different) photograph, moving through the scene at 2-5 px/frame with its
  own rotation: its image motion differs from the background's by construction, so
  motion is never global. Only the window's frames are rendered, straight at the
  crop size, by cv2.warpAffine (bicubic: sharp, and much faster than Lanczos4);
  a clip of `frames_per_clip` frames exists only as its paths.
  """

  max_pan = 4.0  # HR pixels per frame
  object_speed = (2.0, 5.0)  # HR pixels per frame, relative to the scene
  edge_px = 2.0  # width of the object's soft edge

  def __init__(self, photos: dict[str, np.ndarray], spec: source_base.WindowSpec,
               frames_per_clip: int):
    super().__init__(spec)
    if not photos:
      raise source_base.ClipError('synthetic: no photographs')
    if frames_per_clip < 1:
      raise ValueError(f'frames_per_clip must be >= 1, got {frames_per_clip}')
    self.names = list(photos)
    self.photos = [photos[n] for n in self.names]
    self.frames_per_clip = frames_per_clip
    fits = [min(p.shape[:2]) >= spec.crop for p in self.photos]
    if not any(fits):
      raise source_base.ClipError(f'synthetic: every photograph ({", ".join(self.names)}) '
                                f'is smaller than the {spec.crop}x{spec.crop} HR crop')
    if frames_per_clip < spec.num_frames:
      warnings.warn(f'synthetic: clips of {frames_per_clip} frames are shorter than the '
                    f'{spec.num_frames}-frame window; windows reflect at clip edges',
                    source_base.ShortClipWarning, stacklevel=2)

  def sample(self, rng: np.random.Generator) -> np.ndarray:
    return self.render(self.draw(rng))

  def draw(self, rng: np.random.Generator) -> Shot:
    """The camera and object of one window: every random number a window uses."""
    c, length = self.spec.crop, self.frames_per_clip
    centre = int(rng.integers(length))
    t_abs = temporal.reflect_indices(centre + self.spec.offsets, length)
    t = t_abs - (length - 1) / 2  # paths are centred on the clip's middle frame

    # Camera: pan (drift + shake) in photo px, then slower rotation (rad) and log zoom.
    pan = SmoothPath.random(rng, length, offset=(0.0, 0.0), speed=self.max_pan,
                            amp=4.0, freq=(0.2, 3.0))
    turn = SmoothPath.random(rng, length, offset=(rng.uniform(-0.15, 0.15), 0.0),
                             speed=(0.003, 0.003), amp=(0.02, 0.03), freq=(0.1, 1.0))
    motion = Motion(pan=pan, turn=turn, zoom_min=float(turn(t)[:, 1].min()),
                    zoom_base=float(rng.uniform(0.0, 0.2)), crop=c)
    views = motion.views(t)  # [T, 2, 3], before the placement below
    corners = np.array([[0, c - 1, 0, c - 1], [0, 0, c - 1, c - 1], [1, 1, 1, 1]])
    footprint = views @ corners  # [T, 2, 4]: photo (x, y) of each frame's crop corners
    lo, hi = footprint.min(axis=(0, 2)), footprint.max(axis=(0, 2))
    extent = hi - lo  # photo pixels the window's views cover

    fits = [i for i, p in enumerate(self.photos)
            if p.shape[1] - 1 >= extent[0] and p.shape[0] - 1 >= extent[1]]
    if not fits:  # motion too large for every photo: reflect at the photo border
      fits = list(range(len(self.photos)))
    photo = self.photos[fits[int(rng.integers(len(fits)))]]
    room = np.maximum(np.array([photo.shape[1] - 1, photo.shape[0] - 1]) - extent, 0)
    placement = rng.uniform(0, 1, 2) * room - lo  # a random place in the photo
    views[:, :, 2] += placement

    # Object: ellipse semi-axes in scene px, texture centre, scene trajectory.
    texture = self.photos[int(rng.integers(len(self.photos)))]
    axes = rng.uniform(0.12, 0.3, 2) * c
    tex_centre = self._textured_point(rng, texture, int(axes.max()))
    heading = rng.uniform(0, 2 * np.pi)
    speed = rng.uniform(*self.object_speed)
    obj_path = SmoothPath.random(rng, length, offset=(0.0, 0.0, rng.uniform(-np.pi, np.pi)),
                                 speed=(0.0, 0.0, 0.02), amp=(1.0, 1.0, 0.05),
                                 freq=(0.2, 1.5))
    motion = dataclasses.replace(motion, placement=placement, obj_path=obj_path, obj_speed=speed,
                                 obj_heading=np.array([np.cos(heading), np.sin(heading)]))
    obj = motion.objects(t)
    # Place the object at a random point of the central half of the view at the centre
    # frame, wherever the camera looks then.
    j0 = (len(t) - 1) // 2  # offset 0: the centre frame
    anchor = views[j0] @ np.array([*rng.uniform(0.25, 0.75, 2) * (c - 1), 1.0])
    motion = dataclasses.replace(motion, obj_shift=anchor - obj[j0, :2])
    obj[:, :2] += motion.obj_shift
    return Shot(photo=photo, views=views, texture=texture, tex_centre=tex_centre,
                axes=axes, obj=obj, times=t, motion=motion)

  def sample_captured(self, rng: np.random.Generator, readout: float
                      ) -> tuple[np.ndarray, np.ndarray]:
    """One window twice: as `sample` renders it, and through a rolling shutter."""
    shot = self.draw(rng)
    return self.render(shot), self.render(shot, readout)

  def render(self, shot: Shot, readout: float = 0.0) -> np.ndarray:
    """The window [T, crop, crop, 3] float32 in [0, 1] that `shot` describes.

    readout > 0: through a rolling shutter, rendered exactly (the motion is
    known): row r of frame j shows the camera and object where their paths are
    at time times[j] + readout r / crop (camera_effects.row_times), one cv2.remap
    per layer with one affine per row instead of cv2.warpAffine.
    """
    c, axes = self.spec.crop, shot.axes
    out = np.empty((len(shot.views), c, c, 3), np.float32)
    flags = cv2.INTER_CUBIC | cv2.WARP_INVERSE_MAP
    # Scene px from the object's centre beyond which its mask is 0 (views only shrink
    # the scene, so this bounds its extent in crop px too): the object layer and its
    # mask are computed in that box only, a fraction of the frame.
    reach = axes.max() * (1.0 + 0.5 * self.edge_px / axes.min()) + 2.0
    for j, view in enumerate(shot.views):
      if readout:
        out[j] = self._rolling_frame(shot, j, readout, reach)
        continue
      out[j] = cv2.warpAffine(shot.photo, view, (c, c), flags=flags,
                              borderMode=cv2.BORDER_REFLECT_101)
      to_local = shot.to_object(j)
      cx, cy = cv2.invertAffineTransform(to_local)[:, 2]  # object centre, crop px
      x0, x1 = (int(np.clip(v, 0, c)) for v in (np.floor(cx - reach), np.ceil(cx + reach)))
      y0, y1 = (int(np.clip(v, 0, c)) for v in (np.floor(cy - reach), np.ceil(cy + reach)))
      if x1 <= x0 or y1 <= y0:
        continue  # the object is out of view in this frame
      box = to_local.copy()
      box[:, 2] += to_local[:, :2] @ np.array([x0, y0])  # box px -> object-local px
      mask = soft_ellipse(box, axes, self.edge_px, (y1 - y0, x1 - x0))
      box[:, 2] += shot.tex_centre  # box px -> texture px
      layer = cv2.warpAffine(shot.texture, box, (x1 - x0, y1 - y0), flags=flags,
                             borderMode=cv2.BORDER_REFLECT_101)
      region = out[j, y0:y1, x0:x1]
      region += mask[..., None] * (layer - region)
    np.clip(out, 0.0, 1.0, out=out)  # bicubic overshoots at edges
    return out

  def _rolling_frame(self, shot: Shot, j: int, readout: float, reach: float) -> np.ndarray:
    """Frame j with each row rendered at its own time (see render)."""
    if shot.motion is None or shot.times is None:
      raise ValueError('a rolling shutter needs the shot\'s motion (Shot.motion, .times)')
    c = self.spec.crop
    times = shot.times[j] + camera_effects.row_times(c, readout).astype(np.float64)
    views, objs = shot.motion.views(times), shot.motion.objects(times)
    frame = _remap(shot.photo, *_row_maps(views, 0, 0, (c, c)))
    to_local = object_affine(views, objs)  # [c, 2, 3]
    # The box holds the object wherever it is during the readout.
    centres = np.stack([cv2.invertAffineTransform(a)[:, 2] for a in to_local])  # crop px
    x0, y0 = (int(v) for v in np.clip(np.floor(centres.min(axis=0) - reach), 0, c))
    x1, y1 = (int(v) for v in np.clip(np.ceil(centres.max(axis=0) + reach), 0, c))
    if x1 <= x0 or y1 <= y0:
      return frame  # the object is out of view in this frame
    lx, ly = _row_maps(to_local[y0:y1], x0, y0, (y1 - y0, x1 - x0))
    mask = _coverage(lx, ly, shot.axes, self.edge_px)
    layer = _remap(shot.texture, lx + shot.tex_centre[0], ly + shot.tex_centre[1])
    region = frame[y0:y1, x0:x1]
    region += mask[..., None] * (layer - region)
    return frame

  @staticmethod
  def _textured_point(rng: np.random.Generator, photo: np.ndarray, radius: int,
                      candidates: int = 4) -> np.ndarray:
    """(x, y) of the most textured of a few random patches: objects are not flat blobs
    (a patch of night sky would move without showing it)."""
    h, w = photo.shape[:2]
    xs = rng.uniform(min(radius, w / 2), max(w - radius, w / 2), candidates)
    ys = rng.uniform(min(radius, h / 2), max(h - radius, h / 2), candidates)
    r = max(radius // 2, 1)
    spread = [photo[max(int(y) - r, 0):int(y) + r, max(int(x) - r, 0):int(x) + r].std()
              for x, y in zip(xs, ys)]
    best = int(np.argmax(spread))
    return np.array([xs[best], ys[best]])
