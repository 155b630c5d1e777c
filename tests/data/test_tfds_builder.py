"""The clarity_frame_folders tfds builder, built from frame trees the tests write."""

import numpy as np
import pytest
import tensorflow_datasets as tfds

from clarity_jax.data import footage
from clarity_jax.data import pipeline
from clarity_jax.data import source_base
from clarity_jax.data import tfds_builder
from clarity_jax.media import frames
from clarity_jax.media import temporal


def _prepare(manual_dir, data_dir, config: str = 'generic') -> tfds.core.DatasetBuilder:
  """Builds the dataset of `manual_dir` under `data_dir` as the module docstring says."""
  builder = tfds_builder.ClarityFrameFolders(config=config, data_dir=str(data_dir))
  builder.download_and_prepare(
      download_config=tfds.download.DownloadConfig(manual_dir=str(manual_dir)))
  return builder


def test_generic_layout_round_trips_pixels_exactly(tmp_path, png_clips):
  written = png_clips(tmp_path / 'manual', {'street': 4, 'park': 2})
  written.update(png_clips(tmp_path / 'manual', {'bmp_clip': 2}, ext='.bmp', seed=1))
  builder = _prepare(tmp_path / 'manual', tmp_path / 'data', 'generic')
  assert builder.info.name == 'clarity_frame_folders'
  assert builder.info.splits['train'].num_examples == 3
  read = {ex['clip'].decode(): ex['frames']
          for ex in tfds.as_numpy(builder.as_dataset(split='train'))}
  assert set(read) == set(written)
  for name, clip in written.items():
    assert read[name].shape == (len(clip), 24, 20, 3)
    np.testing.assert_array_equal(read[name], np.stack(clip))  # PNG: lossless both ways


def test_generic_layout_takes_videos_decoded_as_footage_decodes_them(tmp_path, write_video):
  rng = np.random.default_rng(3)
  (tmp_path / 'manual').mkdir()
  write_video(tmp_path / 'manual' / 'walk.mp4', (rng.random((4, 16, 24, 3)) * 255).astype(
      np.uint8), 10)
  builder = _prepare(tmp_path / 'manual', tmp_path / 'data', 'generic')
  (example,) = tfds.as_numpy(builder.as_dataset(split='train'))
  assert example['clip'] == b'walk'
  (clip,) = footage.list_footage([tmp_path / 'manual'])
  np.testing.assert_array_equal(example['frames'], np.stack(list(clip.decode())))  # PNG


def test_reds_layout_gives_train_and_validation_splits(tmp_path, png_clips):
  png_clips(tmp_path / 'REDS' / 'train' / 'train_sharp', {'000': 3, '001': 3})
  png_clips(tmp_path / 'REDS' / 'val_sharp', {'000': 2})
  builder = _prepare(tmp_path / 'REDS', tmp_path / 'data', 'reds')
  assert builder.info.splits['train'].num_examples == 2
  assert builder.info.splits['validation'].num_examples == 1


def test_gopro_and_vimeo90k_layouts(tmp_path, png_clips):
  gopro = tmp_path / 'GOPRO_Large'
  png_clips(gopro / 'train' / 'GOPR0372_07_00', {'sharp': 3, 'blur': 3})
  png_clips(gopro / 'test' / 'GOPR0384_11_00', {'sharp': 2})
  builder = _prepare(gopro, tmp_path / 'data', 'gopro')
  (train,) = tfds.as_numpy(builder.as_dataset(split='train'))
  assert train['clip'] == b'GOPR0372_07_00' and len(train['frames']) == 3
  assert builder.info.splits['validation'].num_examples == 1

  vimeo = tmp_path / 'vimeo_septuplet'
  png_clips(vimeo / 'sequences' / '00001', {'0001': 7, '0002': 7})
  (vimeo / 'sep_trainlist.txt').write_text('00001/0001\n00001/0002\n')
  builder = _prepare(vimeo, tmp_path / 'data', 'vimeo90k')
  clips = {ex['clip']: len(ex['frames'])
           for ex in tfds.as_numpy(builder.as_dataset(split='train'))}
  assert clips == {b'00001/0001': 7, b'00001/0002': 7}
  assert list(builder.info.splits) == ['train']


@pytest.mark.parametrize('line', ['../outside', '00001/../../outside', '/etc'])
def test_vimeo90k_listing_cannot_leave_sequences(tmp_path, line, png_clips):
  vimeo = tmp_path / 'vimeo_septuplet'
  png_clips(vimeo / 'sequences' / '00001', {'0001': 2})
  png_clips(vimeo, {'outside': 2})  # frames a listing must not reach
  (vimeo / 'sep_trainlist.txt').write_text(f'00001/0001\n{line}\n')
  with pytest.raises(frames.FrameError, match=f'sep_trainlist.txt: {line!r} is not a folder '
                     'under'):
    _prepare(vimeo, tmp_path / 'data', 'vimeo90k')


def test_mixed_frame_sizes_stop_the_build_naming_the_file(tmp_path, png_clips):
  png_clips(tmp_path / 'manual', {'clip': 2})
  odd = tmp_path / 'manual' / 'clip' / '00002.png'
  frames.write_image(odd, np.zeros((24, 22, 3), np.uint8))
  with pytest.raises(frames.FrameError, match='^' + str(odd) + ': size 22x24'):
    _prepare(tmp_path / 'manual', tmp_path / 'data', 'generic')


def test_tfds_source_windows_come_from_the_clips(tmp_path, png_clips):
  written = png_clips(tmp_path / 'manual', {'long': 5, 'short': 2})
  _prepare(tmp_path / 'manual', tmp_path / 'data', 'generic')
  with pytest.warns(source_base.ShortClipWarning, match="'short' has 2 frames"):
    src = tfds_builder.TfdsSource('clarity_frame_folders/generic', str(tmp_path / 'data'),
                             'train', source_base.WindowSpec(3, 8, 2))
  assert dict(zip(src.names, src.lengths)) == {'long': 5, 'short': 2}
  for i in range(6):
    window = src.sample(np.random.default_rng(i))
    assert window.shape == (3, 8, 8, 3)
    # Locate the centre frame among the written ones (at an aligned origin).
    hits = [(name, t, y, x) for name, clip in written.items() for t, f in enumerate(clip)
            for y in range(0, 17, 2) for x in range(0, 13, 2)
            if np.allclose(window[1], f[y:y + 8, x:x + 8] / 255.0, atol=1e-6)]
    assert len(hits) == 1
    name, t, y, x = hits[0]
    clip = written[name]
    for j, idx in enumerate(temporal.reflect_indices(np.arange(t - 1, t + 2), len(clip))):
      np.testing.assert_allclose(window[j], clip[idx][y:y + 8, x:x + 8] / 255.0, atol=1e-6)


def test_unprepared_dataset_is_a_clear_error(tmp_path):
  with pytest.raises(source_base.ClipError, match='not prepared'):
    tfds_builder.TfdsSource('clarity_frame_folders/gopro', str(tmp_path), 'train',
                       source_base.WindowSpec(1, 8))


def test_pipeline_reads_the_tfds_source(tmp_path, tiny_config, png_clips):
  png_clips(tmp_path / 'manual', {'a': 4, 'b': 4}, size=(32, 32))
  _prepare(tmp_path / 'manual', tmp_path / 'data', 'generic')
  config = tiny_config(**{'data.source': 'tfds', 'data.path': str(tmp_path / 'data'),
                          'data.tfds_name': 'clarity_frame_folders/generic',
                          'data.crop_size': 8, 'scale': 2, 'num_neighbors': 1,
                          'batch_size': 2, 'data.num_parallel_calls': 1})
  batch = next(pipeline.create_train_iterator(config, process_index=0, process_count=1))
  assert batch['lq'].shape == (2, 3, 8, 8, 3) and batch['hr'].shape == (2, 16, 16, 3)
