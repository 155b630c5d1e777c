"""tensorflow-datasets builder for frame-folder video datasets you download yourself.

Nothing is downloaded: put the extracted dataset in a manual_dir, then build once

  tfds build clarity_jax/data/tfds_builder.py --config=reds \\
      --manual_dir=/data/REDS --data_dir=/data/tfds

or from Python (what the tests do):

  builder = ClarityFrameFolders(config='reds', data_dir='/data/tfds')
  builder.download_and_prepare(
      download_config=tfds.download.DownloadConfig(manual_dir='/data/REDS'))

and train on it with config.data.source='tfds', config.data.path='/data/tfds',
config.data.tfds_name='clarity_frame_folders/reds' (see sources.TfdsSource).

An example is one clip: {'clip': name, 'frames': Sequence(Image)}. PNG and JPEG
frames are stored as their original bytes (no re-encoding, no quality loss); other
formats (BMP, TIFF, WebP) are read with frames.read_image and stored as 8-bit PNG.
Frame sizes are checked per clip while building (one line naming the odd file).
"""

from __future__ import annotations

import pathlib
from typing import Iterator

from etils import epath
import numpy as np
import tensorflow_datasets as tfds

from clarity_jax import files
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
    'generic': """Any frame folders (Vid4, your own footage):
      MANUAL_DIR/<clip>/<frames sorted by name>.png|jpg            -> train
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

  def _generate_examples(self, clips: dict[str, list[pathlib.Path]]
                         ) -> Iterator[tuple[str, dict]]:
    for name, paths in clips.items():
      frames.check_clip_sizes(name, paths)
      yield name, {'clip': name, 'frames': [_stored(p) for p in paths]}


def _stored(path: pathlib.Path) -> pathlib.Path | np.ndarray:
  """A path (tfds stores the file's bytes) or, for formats tf.image cannot decode, pixels."""
  if path.suffix.lower() in _STORED_AS_IS:
    return path
  return files.to_uint8(frames.read_image(path))


def _clip_tree(root: pathlib.Path) -> dict[str, list[pathlib.Path]]:
  return frames.list_clips(root) if root.is_dir() else {}


def _first_dir(*candidates: pathlib.Path) -> pathlib.Path | None:
  return next((c for c in candidates if c.is_dir()), None)


def _reds(root: pathlib.Path) -> dict[str, dict[str, list[pathlib.Path]]]:
  out = {}
  for split, sub, parent in (('train', 'train_sharp', 'train'),
                             ('validation', 'val_sharp', 'val')):
    found = _first_dir(root / sub, root / parent / sub)
    out[split] = _clip_tree(found) if found else {}
  return out


def _gopro(root: pathlib.Path) -> dict[str, dict[str, list[pathlib.Path]]]:
  out = {}
  for split, sub in (('train', 'train'), ('validation', 'test')):
    clips = {}
    if (root / sub).is_dir():
      for seq in sorted(p for p in (root / sub).iterdir() if (p / 'sharp').is_dir()):
        clips[seq.name] = frames.list_clips(seq / 'sharp')['sharp']
    out[split] = clips
  return out


def _vimeo90k(root: pathlib.Path) -> dict[str, dict[str, list[pathlib.Path]]]:
  out = {}
  for split, listing in (('train', 'sep_trainlist.txt'), ('validation', 'sep_testlist.txt')):
    clips = {}
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
        clips[line] = frames.list_clips(folder)[folder.name]
    out[split] = clips
  return out


def _generic(root: pathlib.Path) -> dict[str, dict[str, list[pathlib.Path]]]:
  if (root / 'train').is_dir():
    return {'train': _clip_tree(root / 'train'),
            'validation': _clip_tree(root / 'validation')}
  return {'train': frames.list_clips(root)}


_LISTERS = {'reds': _reds, 'gopro': _gopro, 'vimeo90k': _vimeo90k, 'generic': _generic}
