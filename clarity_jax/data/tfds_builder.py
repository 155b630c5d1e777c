"""tensorflow-datasets builder for video datasets you download yourself, and the
source that trains on what it built (TfdsSource, config.data.source='tfds').

Nothing is downloaded: put the extracted dataset in a manual_dir, then build once

  tfds build clarity_jax/data/tfds_builder.py --config=reds \\
      --manual_dir=/data/REDS --data_dir=/data/tfds

or from Python (what the tests do):

  builder = ClarityFrameFolders(config='reds', data_dir='/data/tfds')
  builder.download_and_prepare(
      download_config=tfds.download.DownloadConfig(manual_dir='/data/REDS'))

and train on it with config.data.source='tfds', config.data.path='/data/tfds',
config.data.tfds_name='clarity_frame_folders/reds'.

Clips are listed and decoded as config.data.source='footage' lists and decodes them
(footage.list_footage), so a layout's folders may hold frame folders or videos. An
example is one clip: {'clip': name, 'frames': Sequence(Image)}. Clips of PNG and
JPEG frames are stored as the files' bytes (no re-encoding, no quality loss); other
clips (BMP, TIFF or WebP frames, videos) as their decoded 8-bit frames, in PNG.
Frame sizes are checked per clip while listing (one line naming the odd file).
"""

from __future__ import annotations

import dataclasses
import os
import pathlib
from typing import Iterator

from etils import epath
import numpy as np
import tensorflow_datasets as tfds

from clarity_jax.data import footage
from clarity_jax.data import source_base
from clarity_jax.media import frames

_STORED_AS_IS = ('.png', '.jpg', '.jpeg')

_LAYOUTS = {
    'reds': """REDS (Nah et al., 2019), sharp frames:
      MANUAL_DIR/train_sharp/<clip 000..239>/<00000000..00000099>.png  -> train
      MANUAL_DIR/val_sharp/<clip 000..029>/*.png                       -> validation
    (train_sharp/ and val_sharp/ may also sit under MANUAL_DIR/train/ and
    MANUAL_DIR/val/, as the archives extract.)""",
    'gopro': """GoPro (GOPRO_Large, Nah et al., 2017), sharp frames:
      MANUAL_DIR/train/<sequence>/sharp/*.png  -> train
      MANUAL_DIR/test/<sequence>/sharp/*.png   -> validation""",
    'vimeo90k': """Vimeo-90K septuplets (Xue et al., 2019):
      MANUAL_DIR/sequences/<00001>/<0001>/im1.png .. im7.png
      MANUAL_DIR/sep_trainlist.txt  ('00001/0001' per line)  -> train
      MANUAL_DIR/sep_testlist.txt                            -> validation""",
    'generic': """Any footage (Vid4, your own), frame folders or videos:
      MANUAL_DIR/<clip>/<frames sorted by name>.png|jpg, or videos  -> train
    or, with explicit splits,
      MANUAL_DIR/train/<clip>/..., MANUAL_DIR/validation/<clip>/...""",
}


class ClarityFrameFolders(tfds.core.GeneratorBasedBuilder):
  """Sharp video clips from frame folders (REDS, GoPro, Vimeo-90K, generic)."""

  VERSION = tfds.core.Version('1.0.0')
  RELEASE_NOTES = {'1.0.0': 'Initial release.'}
  BUILDER_CONFIGS = [tfds.core.BuilderConfig(name=name, description=layout)
                     for name, layout in _LAYOUTS.items()]
  DEFAULT_BUILDER_CONFIG_NAME = 'generic'
  MANUAL_DOWNLOAD_INSTRUCTIONS = ('Download and extract the dataset yourself, then pass '
                                  'its folder as manual_dir. Expected layouts:\n\n'
                                  + '\n\n'.join(f'{k}: {v}' for k, v in _LAYOUTS.items()))

  # tfds 4.9.x finds a builder's code through importlib_resources, which it does not
  # declare as a dependency (tensorflow/datasets#11212): building then fails with
  # ModuleNotFoundError. This file is the code path; say so directly.
  @tfds.core.utils.classproperty
  @classmethod
  def code_path(cls) -> epath.Path:
    return epath.Path(__file__)

  def _info(self) -> tfds.core.DatasetInfo:
    return self.dataset_info_from_configs(
        description='Sharp high-resolution clips for training ClarityNetSR.',
        features=tfds.features.FeaturesDict({
            'clip': tfds.features.Text(),
            'frames': tfds.features.Sequence(tfds.features.Image(shape=(None, None, 3))),
        }),
        supervised_keys=None,
    )

  def _split_generators(self, dl_manager: tfds.download.DownloadManager):
    root = pathlib.Path(dl_manager.manual_dir)
    splits = _LISTERS[self.builder_config.name](root)
    if not any(splits.values()):
      raise frames.FrameError(root, f'no clips found for the {self.builder_config.name!r} '
                              f'layout:\n{_LAYOUTS[self.builder_config.name]}')
    return {name: self._generate_examples(clips) for name, clips in splits.items() if clips}

  def _generate_examples(self, clips: list[footage.Clip]) -> Iterator[tuple[str, dict]]:
    for clip in clips:
      yield clip.name, {'clip': clip.name, 'frames': _stored(clip)}


def _stored(clip: footage.Clip) -> list[pathlib.Path] | list[np.ndarray]:
  """The frame files (tfds stores their bytes) or, for what tf.image cannot decode
  (other image formats, videos), the decoded frames."""
  paths = clip.frame_paths
  if paths and all(p.suffix.lower() in _STORED_AS_IS for p in paths):
    return paths
  return list(clip.decode())


def _clips_in(root: pathlib.Path | None) -> list[footage.Clip]:
  return footage.list_footage([root]) if root is not None and root.is_dir() else []


def _named(name: str, folder: pathlib.Path) -> footage.Clip:
  """The clip of the frames in `folder`, named `name` (folder names repeat in a layout)."""
  clips = footage.list_footage([folder])
  if len(clips) != 1 or clips[0].path != folder:
    raise frames.FrameError(folder, 'expected the frames of one clip')
  return dataclasses.replace(clips[0], name=name)


def _first_dir(*candidates: pathlib.Path) -> pathlib.Path | None:
  return next((c for c in candidates if c.is_dir()), None)


def _reds(root: pathlib.Path) -> dict[str, list[footage.Clip]]:
  return {split: _clips_in(_first_dir(root / sub, root / parent / sub))
          for split, sub, parent in (('train', 'train_sharp', 'train'),
                                     ('validation', 'val_sharp', 'val'))}


def _gopro(root: pathlib.Path) -> dict[str, list[footage.Clip]]:
  out = {}
  for split, sub in (('train', 'train'), ('validation', 'test')):
    sequences = sorted((root / sub).iterdir()) if (root / sub).is_dir() else []
    out[split] = [_named(seq.name, seq / 'sharp') for seq in sequences
                  if (seq / 'sharp').is_dir()]
  return out


def _vimeo90k(root: pathlib.Path) -> dict[str, list[footage.Clip]]:
  out = {}
  for split, listing in (('train', 'sep_trainlist.txt'), ('validation', 'sep_testlist.txt')):
    clips = []
    if (root / listing).is_file():
      sequences = (root / 'sequences').resolve()
      for line in (root / listing).read_text().split():
        folder = root / 'sequences' / line
        # A listing names folders under sequences/: '../', an absolute path or a
        # link out of it would read whatever it points at.
        if not folder.resolve().is_relative_to(sequences) or folder.resolve() == sequences:
          raise frames.FrameError(root / listing, f'{line!r} is not a folder under '
                                  f'{root / "sequences"}')
        if not folder.is_dir():
          raise frames.FrameError(folder, f'listed in {listing} but missing')
        clips.append(_named(line, folder))
    out[split] = clips
  return out


def _generic(root: pathlib.Path) -> dict[str, list[footage.Clip]]:
  if (root / 'train').is_dir():
    return {'train': _clips_in(root / 'train'), 'validation': _clips_in(root / 'validation')}
  return {'train': footage.list_footage([root])}


_LISTERS = {'reds': _reds, 'gopro': _gopro, 'vimeo90k': _vimeo90k, 'generic': _generic}


class TfdsSource(source_base.ClipSource):
  """Clips of a prepared clarity_frame_folders dataset (config.data.source='tfds').

  The split is read once with image decoding skipped and kept in memory as the
  encoded frame bytes (the size of the dataset on disk); a window decodes only its
  own T frames, with frames.decode_image (as a frame file is read). For datasets
  larger than RAM, train on their folders with config.data.source='footage'.
  """

  def __init__(self, name: str, data_dir: str, split: str, spec: source_base.WindowSpec):
    where = os.path.join(data_dir, name) if data_dir else name
    try:
      builder = tfds.builder(name, data_dir=data_dir or None)
    except tfds.core.registered.DatasetNotFoundError as e:
      raise source_base.ClipError(f'{where}: unknown tensorflow-datasets builder ({e})') from e
    if not builder.is_prepared():
      raise source_base.ClipError(f'{where}: dataset not prepared; build it first (see '
                                    'clarity_jax/data/tfds_builder.py)')
    if split not in builder.info.splits:
      raise source_base.ClipError(f'{where}: no split {split!r} (has '
                                    f'{list(builder.info.splits)})')
    ds = builder.as_dataset(split=split, decoders={'frames': tfds.decode.SkipDecoding()})
    self._encoded = []
    names, sizes = [], []
    for example in tfds.as_numpy(ds):
      names.append(example['clip'].decode())
      self._encoded.append(list(example['frames']))
      sizes.append(frames.decode_image(self._encoded[-1][0], f'{where}:{names[-1]}').shape[:2])
    self._where = where
    super().__init__(spec, names, [len(e) for e in self._encoded], sizes,
                     [f'{where}:{n}' for n in names])

  def _read(self, clip: int, indices: np.ndarray, y: int, x: int) -> np.ndarray:
    c = self.spec.crop
    where = f'{self._where}:{self.names[clip]}'
    # A frame repeated by reflection is decoded once.
    unique, inverse = np.unique(indices, return_inverse=True)
    decoded = np.stack([frames.decode_image(self._encoded[clip][i], f'{where}[{i}]')[
        y:y + c, x:x + c] for i in unique])
    return decoded[inverse.reshape(-1)]
