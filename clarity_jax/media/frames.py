"""Frame I/O shared by the whole project: reading, writing, listing clips.

Frames are float32 RGB [H, W, 3] in [0, 1] everywhere in clarity_jax. Anything
a camera or a dataset may hand us (grayscale, RGBA, 16-bit PNG, palette) is
converted on read; anything broken stops with a FrameError whose message starts
with the file's path, so a bad frame among thousands is found in one look.

Layout (REDS, GoPro, Vid4): ROOT/<clip>/<frames sorted by name>; ROOT may also be
a single clip folder of frames.
"""

from collections.abc import Sequence
import io
import os
import warnings
from pathlib import Path
import re

from absl import logging
import cv2
from etils import epath
import numpy as np
from PIL import Image

from clarity_jax import files
from clarity_jax.errors import PathError

# Files that may sit beside frames without being one (e.g. degrade's sidecar).
_QUIET_EXTENSIONS = ('.json', '.txt', '.md')


class FrameError(PathError):
  """A frame or frame folder is missing, unreadable or inconsistent."""


def _to_float_rgb(img: np.ndarray, path: str | os.PathLike) -> np.ndarray:
  """cv2's decoded array (BGR[A], gray, 8/16-bit or float) -> RGB float32 in [0, 1]."""
  if img.dtype == np.uint8:
    x = img.astype(np.float32) / 255.0
  elif img.dtype == np.uint16:
    x = img.astype(np.float32) / 65535.0
  elif img.dtype == np.float32:
    x = np.clip(np.nan_to_num(img), 0.0, 1.0)
  else:
    raise FrameError(path, f'unsupported pixel type {img.dtype}')
  if x.ndim == 2:
    x = x[..., None]
  channels = x.shape[-1]
  if channels in (1, 2):  # gray, gray + alpha: alpha dropped
    return np.repeat(x[..., :1], 3, axis=-1)
  if channels in (3, 4):  # BGR, BGRA: alpha dropped (frames are opaque)
    return np.ascontiguousarray(x[..., 2::-1])
  raise FrameError(path, f'unsupported number of channels {channels}')


# The largest frame read: 100 megapixels (an 8K frame is 33) is 1.2 GB as float32
# RGB. A few hundred bytes of PNG can declare 20000x20000 pixels: refused unread.
MAX_PIXELS = 100_000_000


def read_image(path: str | os.PathLike) -> np.ndarray:
  """Reads a frame as float32 RGB [H, W, 3] in [0, 1] (see decode_image).

  Missing, empty, truncated or undecodable files raise FrameError.
  """
  path = Path(path)
  try:
    data = path.read_bytes()
  except OSError as e:
    raise FrameError(path, f'cannot read ({e.strerror or e})') from e
  return decode_image(data, path)


def decode_image(data: bytes, where: str | os.PathLike) -> np.ndarray:
  """An image file's bytes (a frame stored elsewhere: a dataset record) as float32
  RGB [H, W, 3] in [0, 1], exactly as read_image reads that file.

  Grayscale is repeated to RGB, alpha is dropped, 16-bit is scaled by 1/65535
  (full precision kept), the EXIF orientation is applied. Errors are FrameErrors
  naming `where`.
  """
  # The header first: no decoding of a decompression bomb.
  _, _, orientation = _header(data, where)
  img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)  # None: corrupt
  if img is None or img.size == 0:
    raise FrameError(where, 'not a readable image (truncated or corrupt?)')
  return _to_float_rgb(_upright(img, orientation), where)


# EXIF orientation -> the transform that shows the picture upright, in NumPy (as
# PIL.ImageOps.exif_transpose, which would need PIL to decode; OpenCV's
# IMREAD_UNCHANGED, which keeps 16-bit and alpha, ignores the tag).
_UPRIGHT = {
    2: lambda a: a[:, ::-1],
    3: lambda a: a[::-1, ::-1],
    4: lambda a: a[::-1],
    5: lambda a: a.swapaxes(0, 1),
    6: lambda a: np.rot90(a, -1),
    7: lambda a: np.rot90(a, 2).swapaxes(0, 1),
    8: lambda a: np.rot90(a, 1),
}


def _upright(img: np.ndarray, orientation: int) -> np.ndarray:
  turn = _UPRIGHT.get(orientation)
  return img if turn is None else np.ascontiguousarray(turn(img))


def write_image(path: str | os.PathLike, img: np.ndarray, jpeg_quality: int = 95) -> None:
  """Writes float [0, 1] (or uint8) RGB as 8-bit PNG or JPEG, atomically.

  The bytes go to a hidden temporary name in the same folder, then os.replace
  (files.write_bytes): a crash never leaves a half-written frame under the real
  name. Object-store URLs (gs://, s3://: a training workdir on GCS) take one
  etils.epath write, as orbax's checkpoints there: an object appears whole or
  not at all.
  """
  url = '://' in os.fspath(path)
  path = epath.Path(path) if url else Path(path)
  ext = path.suffix.lower()
  if ext not in files.IMAGE_EXTENSIONS:
    raise FrameError(path, f'unsupported image extension {ext!r}; expected '
                     f'{files.IMAGE_EXTENSIONS}')
  img = np.asarray(img)
  if img.ndim == 3 and img.shape[-1] == 1:
    img = img[..., 0]
  if not (img.ndim == 2 or (img.ndim == 3 and img.shape[-1] == 3)):
    raise FrameError(path, f'expected an [H, W, 3] or [H, W] image, got shape {img.shape}')
  img = files.to_uint8(img)
  if img.ndim == 3:
    img = cv2.cvtColor(img, cv2.COLOR_RGB2BGR)
  params = [cv2.IMWRITE_JPEG_QUALITY, int(jpeg_quality)] if ext in ('.jpg', '.jpeg') else []
  ok, buf = cv2.imencode(ext, img, params)
  if not ok:
    raise FrameError(path, f'cannot encode as {ext}')
  if url:
    try:
      path.write_bytes(buf.tobytes())
    except OSError as e:
      raise FrameError(path, f'cannot write ({e.strerror or e})') from e
    return
  try:
    files.write_bytes(path, buf.tobytes())
  except OSError as e:
    raise FrameError(path, f'cannot write ({e.strerror or e})') from e


def natural_key(name: str) -> tuple:
  """'frame10' after 'frame9': digits compare as numbers (zero-padded names are unaffected)."""
  return tuple(int(s) if s.isdigit() else s for s in re.split(r'(\d+)', name))


def _is_frame(p: Path) -> bool:
  return p.is_file() and not p.name.startswith('.') and p.suffix.lower() in files.IMAGE_EXTENSIONS


def _frames_in(folder: Path) -> list[Path]:
  frames = sorted((p for p in folder.iterdir() if _is_frame(p)), key=lambda p: natural_key(p.name))
  ignored = [p.name for p in folder.iterdir()
             if p.is_file() and not p.name.startswith('.') and not _is_frame(p)
             and p.suffix.lower() not in _QUIET_EXTENSIONS]
  if ignored:
    logging.warning('%s: ignoring %d non-image file(s), e.g. %s', folder, len(ignored),
                    ignored[0])
  return frames


def list_clips(root: str | os.PathLike) -> dict[str, list[Path]]:
  """{clip name: frame paths sorted by name} for ROOT/<clip>/<frames>.

  ROOT holding frames itself is one clip named after ROOT. Raises FrameError for
  a missing or empty root, a root mixing frames and clip folders, or a clip
  folder without frames.
  """
  root = Path(root)
  if not root.is_dir():
    raise FrameError(root, 'no such folder' if not root.exists() else 'not a folder')
  own_frames = _frames_in(root)
  subdirs = sorted((p for p in root.iterdir() if p.is_dir() and not p.name.startswith('.')),
                   key=lambda p: natural_key(p.name))
  if own_frames and subdirs:
    raise FrameError(root, f'holds both frames ({own_frames[0].name}, ...) and clip folders '
                     f'({subdirs[0].name}, ...); expected one or the other')
  if own_frames:
    return {root.name: own_frames}
  if not subdirs:
    raise FrameError(root, 'no frames and no clip folders '
                     f'(frames: {", ".join(files.IMAGE_EXTENSIONS)})')
  clips = {}
  for d in subdirs:
    frames = _frames_in(d)
    if not frames:
      raise FrameError(d, f'clip folder has no frames ({", ".join(files.IMAGE_EXTENSIONS)})')
    clips[d.name] = frames
  return clips


def is_one_clip(clips: dict[str, list[Path]], root: str | os.PathLike) -> bool:
  """Whether list_clips(root) found ROOT itself to be one clip folder of frames (its
  outputs then keep that layout) rather than a folder of clip folders."""
  return len(clips) == 1 and next(iter(clips.values()))[0].parent == Path(root)


def image_size(path: str | os.PathLike) -> tuple[int, int]:
  """(height, width) as shown, upright after any EXIF orientation, from the file
  header alone (PIL reads no pixels for this); FrameError over MAX_PIXELS."""
  h, w, orientation = _header(path)
  return (w, h) if orientation in (5, 6, 7, 8) else (h, w)


def _header(source: str | os.PathLike | bytes, where: str | os.PathLike | None = None
            ) -> tuple[int, int, int]:
  """(stored height, stored width, EXIF orientation 1-8) from the header of a file,
  or of a file's bytes (then named `where`)."""
  where = source if where is None else where
  try:
    size = len(source) if isinstance(source, bytes) else os.stat(source).st_size
    if size == 0:
      raise FrameError(where, 'empty file (0 bytes)')
    with warnings.catch_warnings():
      warnings.simplefilter('ignore', Image.DecompressionBombWarning)
      limit, Image.MAX_IMAGE_PIXELS = Image.MAX_IMAGE_PIXELS, None  # checked below
      try:
        with Image.open(io.BytesIO(source) if isinstance(source, bytes) else source) as im:
          w, h = im.size
          orientation = _orientation(im)
      finally:
        Image.MAX_IMAGE_PIXELS = limit
  except FrameError:
    raise
  except (OSError, Image.UnidentifiedImageError, ValueError) as e:
    raise FrameError(where, f'not a readable image ({e.__class__.__name__})') from e
  if w * h > MAX_PIXELS:
    raise FrameError(where, f'{w}x{h} is {w * h / 1e6:.0f} megapixels, over the '
                     f'{MAX_PIXELS // 10**6}-megapixel limit (a decompression bomb?)')
  return h, w, orientation


_EXIF_ORIENTATION = 0x0112


def _orientation(im: Image.Image) -> int:
  """The EXIF orientation; 1 (as stored) when absent, unreadable or out of range."""
  try:
    value = int(im.getexif().get(_EXIF_ORIENTATION, 1))
  except (TypeError, ValueError, SyntaxError, OSError):  # PIL's broken-EXIF errors
    return 1
  return value if 1 <= value <= 8 else 1


def check_clip_sizes(clip_name: str, paths: Sequence[str | os.PathLike]) -> tuple[int, int]:
  """(height, width) shared by all frames of a clip; FrameError naming the odd one out."""
  if not paths:
    raise FrameError(clip_name, 'clip has no frames')
  first = image_size(paths[0])
  for p in paths[1:]:
    size = image_size(p)
    if size != first:
      raise FrameError(p, f'size {size[1]}x{size[0]} differs from {first[1]}x{first[0]} of '
                       f'{Path(paths[0]).name}, the first frame of clip {clip_name!r}')
  return first
