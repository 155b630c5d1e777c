"""Shared fixtures: tiny configs, checkpoint reading, subprocesses of the checkout,
reference media (clips, videos, PSNR, bicubic) and weights.

Tests mirror the package (tests/data, tests/models, ...) and take what they share
from these fixtures; nothing imports this file. Scripts a test runs in a process of
its own are files in tests/scripts (the script fixture).
"""

import os
import pathlib
import sys

os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')
# Tests run tiny models for a few steps: XLA's compile time dominates, and skipping
# LLVM's optimisation passes halves it (measured: tests/test_flow.py 47 s -> 21 s).
# Subprocesses inherit it. Set before anything imports jax.
os.environ['XLA_FLAGS'] = ' '.join(
    [os.environ.get('XLA_FLAGS', ''), '--xla_backend_optimization_level=0']).strip()

import av
import numpy as np
import pytest

REPO = pathlib.Path(__file__).resolve().parent.parent
SCRIPTS = REPO / 'tests' / 'scripts'
SHARED_DATA = REPO.parent / 'shared' / 'data'

# The runlocal config shrunk further: a step takes well under a second on CPU.
TINY = {
    'model.variant': 'tiny', 'num_neighbors': 1, 'data.crop_size': 16, 'batch_size': 2,
    'num_train_steps': 4, 'warmup_steps': 1, 'log_every_steps': 2, 'eval_every_steps': 4,
    'num_eval_batches': 1, 'checkpoint_every_steps': 2,
}
# The tiny run on the command line (python -m clarity_jax.main), for subprocess tests.
TINY_FLAGS = [
    '--config=configs/default.py:runlocal', '--config.model.variant=tiny',
    '--config.num_neighbors=1', '--config.data.crop_size=16', '--config.batch_size=2',
    '--config.warmup_steps=1', '--config.log_every_steps=1', '--config.eval_every_steps=1000',
    '--config.num_eval_batches=1', '--config.checkpoint_every_steps=2',
    '--verbosity=0',  # INFO logs on (quiet by default): tests read the lines they assert
]


def _load_config(arg: str = 'runlocal'):
  from clarity_jax import config as config_lib  # after XLA_FLAGS is set
  return config_lib.get_config(REPO / 'configs' / 'default.py', arg)


def _tiny_config(**overrides):
  from clarity_jax import config as config_lib  # after XLA_FLAGS is set
  return config_lib.override(_load_config('runlocal'), {
      **TINY, **{k.replace('__', '.'): v for k, v in overrides.items()}})


@pytest.fixture(scope='session')
def repo() -> pathlib.Path:
  return REPO


@pytest.fixture(scope='session')
def load_config():
  """load_config(arg='runlocal'): configs/default.py with a config argument."""
  return _load_config


@pytest.fixture(scope='session')
def tiny_config():
  """tiny_config(**overrides): runlocal shrunk for tests; 'a.b' fields as a__b=value
  or through the returned ConfigDict."""
  return _tiny_config


@pytest.fixture(scope='session')
def tiny_overrides() -> dict:
  """The 'a.b' -> value overrides that make runlocal tiny, for subprocess scripts
  (apply them with clarity_jax.config.override)."""
  return dict(TINY)


@pytest.fixture(scope='session')
def tiny_flags() -> list[str]:
  return list(TINY_FLAGS)


@pytest.fixture(scope='session')
def final_params():
  """final_params(workdir) -> (step, params) of a workdir's latest checkpoint."""
  def read(workdir):
    from clarity_jax.train import checkpoints  # after XLA_FLAGS is set
    params, _, step, _ = checkpoints.restore_params(workdir, weights='raw')
    return step, params
  return read


@pytest.fixture(scope='session')
def command_env() -> dict[str, str]:
  """The environment of a subprocess that must import this checkout's package: a
  `python -m clarity_jax.<command>` run or a script of tests/scripts."""
  env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL='2')
  env['PYTHONPATH'] = os.pathsep.join([str(REPO), env.get('PYTHONPATH', '')])
  return env


@pytest.fixture(scope='session')
def script():
  """script(name, *args) -> the argv running tests/scripts/<name>.py with this Python
  (the scripts a test runs in a process of its own; run them with command_env)."""
  return lambda name, *args: [sys.executable, str(SCRIPTS / f'{name}.py'), *map(str, args)]


@pytest.fixture
def shared_data() -> pathlib.Path:
  if not SHARED_DATA.is_dir():
    pytest.skip('../shared/data is not present beside the checkout')
  return SHARED_DATA


# ------------------------------------------------------------------------ media

@pytest.fixture(scope='session')
def photo() -> np.ndarray:
  """A real photograph (skimage.data.astronaut, 512x512), float32 in [0, 1]."""
  from skimage import data as skdata  # pylint: disable=g-import-not-at-top
  return skdata.astronaut().astype(np.float32) / 255.0


@pytest.fixture(scope='session')
def degradation_cfg():
  """degradation_cfg(**fields): the package's degradation model (eq. 1), fields set."""
  def make(**overrides):
    from clarity_jax.data import degradation_config  # after XLA_FLAGS is set
    cfg = degradation_config.get_config()
    for key, value in overrides.items():
      cfg[key] = value
    return cfg
  return make


def _png_clips(root: pathlib.Path, clips: dict[str, int], size: tuple[int, int] = (24, 20),
               seed: int = 0, ext: str = '.png') -> dict[str, list[np.ndarray]]:
  """root/<clip>/<iii>.png: clips[clip] frames of uniform noise of `size` (h, w), drawn
  in order from one seeded stream. Returns {clip: [frames as stored, uint8]}."""
  from clarity_jax import files  # after XLA_FLAGS is set
  from clarity_jax.media import frames  # after XLA_FLAGS is set
  rng = np.random.default_rng(seed)
  out = {}
  for name, n in clips.items():
    (root / name).mkdir(parents=True)
    out[name] = []
    for i in range(n):
      image = rng.random((*size, 3)).astype(np.float32)
      frames.write_image(root / name / f'{i:03d}{ext}', image)
      out[name].append(files.to_uint8(image))
  return out


def _psnr(a, b, peak: float = 1.0) -> float:
  """PSNR in dB in float64 (inf for equal arrays): a reference apart from
  clarity_jax.metrics."""
  mse = float(np.mean((np.asarray(a, np.float64) - np.asarray(b, np.float64)) ** 2))
  return float('inf') if mse == 0 else float(10 * np.log10(peak ** 2 / mse))


def _pil_bicubic(frame: np.ndarray, scale: int) -> np.ndarray:
  """Keys a = -0.5 bicubic by Pillow (renormalised at the borders), one float32 ('F')
  channel at a time, unclipped: a reference independent of jax.image.resize."""
  from PIL import Image  # pylint: disable=g-import-not-at-top
  h, w = frame.shape[:2]
  return np.stack([np.asarray(Image.fromarray(np.ascontiguousarray(frame[..., c], np.float32))
                              .resize((scale * w, scale * h), Image.Resampling.BICUBIC))
                   for c in range(frame.shape[-1])], axis=-1)


@pytest.fixture(scope='session')
def pil_bicubic():
  """pil_bicubic(frame, scale) -> [scale h, scale w, C] float32: Pillow's bicubic."""
  return _pil_bicubic


@pytest.fixture(scope='session')
def png_clips():
  """png_clips(root, {clip: frames}, size=(24, 20), seed=0, ext='.png') -> {clip: [uint8
  frames as stored]}: folders of random frames, a footage tree in miniature."""
  return _png_clips


@pytest.fixture(scope='session')
def psnr():
  """psnr(a, b, peak=1.0) -> dB, float64, inf where a == b."""
  return _psnr


def _smooth_frames(n: int, h: int, w: int, seed: int = 0) -> np.ndarray:
  """[n, h, w, 3] uint8 moving gradients: content H.264 keeps well (PSNR > 35 dB)."""
  rng = np.random.default_rng(seed)
  yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
  tint = rng.uniform(-0.1, 0.1, 3)  # colour varies slowly: 4:2:0 chroma keeps it
  out = []
  for t in range(n):
    luma = 0.5 + 0.35 * np.sin(xx / 9 + yy / 13 + 0.3 * t)
    img = luma[..., None] + tint + 0.05 * np.sin(yy / 17 + t)[..., None]
    out.append((np.clip(img, 0, 1) * 255 + 0.5).astype(np.uint8))
  return np.stack(out)


def _write_video(path: pathlib.Path, frames_u8: np.ndarray, fps=None, codec='libx264',
                 pix_fmt: str = 'yuv420p', crf: int = 12) -> pathlib.Path:
  """Encodes with PyAV directly (the reference writer the tests trust)."""
  import fractions  # pylint: disable=g-import-not-at-top
  fps = fractions.Fraction(30000, 1001) if fps is None else fps
  with av.open(str(path), 'w') as container:
    stream = container.add_stream(codec, rate=fps)
    stream.height, stream.width = frames_u8.shape[1:3]
    stream.pix_fmt = pix_fmt
    stream.options = {'crf': str(crf)}
    for f in frames_u8:
      for packet in stream.encode(av.VideoFrame.from_ndarray(f, format='rgb24')):
        container.mux(packet)
    for packet in stream.encode():
      container.mux(packet)
  return path


def _decode_all(path: pathlib.Path):
  """(frames [n, h, w, 3] uint8, (average rate, codec name, pixel format))."""
  with av.open(str(path)) as container:
    stream = container.streams.video[0]
    out = np.stack([f.to_ndarray(format='rgb24') for f in container.decode(stream)])
    info = (stream.average_rate, stream.codec_context.name, stream.codec_context.pix_fmt)
  return out, info


@pytest.fixture(scope='session')
def smooth_frames():
  return _smooth_frames


@pytest.fixture(scope='session')
def write_video():
  """write_video(path, frames_u8, fps=30000/1001, codec, pix_fmt, crf) -> path."""
  return _write_video


@pytest.fixture(scope='session')
def decode_all():
  return _decode_all


# ---------------------------------------------------------------------- weights

def _random_params(spec, seed: int = 0):
  """(graphdef, params) of a bundle.ModelSpec with LeCun-normal kernels drawn by NumPy.

  The same distribution as Flax's initialisers, without compiling one XLA
  program per initialiser (~10 s on a busy 2-core machine).
  """
  import jax  # pylint: disable=g-import-not-at-top
  from flax import nnx  # pylint: disable=g-import-not-at-top
  graphdef, state = nnx.split(nnx.eval_shape(spec.create))
  rng = np.random.default_rng(seed)

  def draw(path, x):
    name = str(getattr(path[-1], 'key', path[-1]))
    if name == 'kernel':
      return (rng.standard_normal(x.shape) / np.sqrt(np.prod(x.shape[:-1]))).astype(x.dtype)
    if name == 'bias':
      return np.zeros(x.shape, x.dtype)
    return np.ones(x.shape, x.dtype)  # the attention's log temperature

  return graphdef, jax.tree_util.tree_map_with_path(draw, nnx.to_pure_dict(state))


# torchvision VGG16 `features` conv layers: (index, in, out).
VGG16_CONVS = ((0, 3, 64), (2, 64, 64), (5, 64, 128), (7, 128, 128), (10, 128, 256),
               (12, 256, 256), (14, 256, 256), (17, 256, 512), (19, 512, 512),
               (21, 512, 512), (24, 512, 512), (26, 512, 512), (28, 512, 512))


def _random_lpips_weights(net: str, seed: int) -> dict[str, np.ndarray]:
  """Random weights in the key layout of `lpips.LPIPS(net=...).state_dict()`."""
  rng = np.random.default_rng(seed)
  if net == 'vgg':
    convs = [(idx, cin, cout, 3) for idx, cin, cout in VGG16_CONVS]
    taps = [64, 128, 256, 512, 512]
  else:
    convs = [(0, 3, 64, 11), (3, 64, 192, 5), (6, 192, 384, 3), (8, 384, 256, 3),
             (10, 256, 256, 3)]
    taps = [64, 192, 384, 256, 256]
  out = {}
  for idx, cin, cout, k in convs:
    # The slice number in the key is irrelevant to the loader (torchvision index).
    out[f'net.slice1.{idx}.weight'] = (rng.standard_normal((cout, cin, k, k))
                                       * np.sqrt(2 / (cin * k * k))).astype(np.float32)
    out[f'net.slice1.{idx}.bias'] = rng.normal(0, 0.05, cout).astype(np.float32)
  for k, c in enumerate(taps):
    out[f'lin{k}.model.1.weight'] = rng.uniform(0, 1, (1, c, 1, 1)).astype(np.float32)
  out['scaling_layer.shift'] = np.array([-.030, -.088, -.188], np.float32)
  return out


@pytest.fixture(scope='session')
def random_params():
  """random_params(spec, seed=0) -> (graphdef, params) of a bundle.ModelSpec."""
  return _random_params


@pytest.fixture(scope='session')
def random_lpips_weights():
  """random_lpips_weights(net, seed) -> LPIPS state dict of random arrays."""
  return _random_lpips_weights
