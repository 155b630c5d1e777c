"""metrics.json and results.md of a made-up evaluation: tables, the protocol, inf."""

import json
from pathlib import Path

import pytest

from clarity_jax.evaluation import clips as clips_lib
from clarity_jax.evaluation import methods
from clarity_jax.evaluation import report as report_lib


def _clip_entry(psnr: float, tof: float | None) -> dict:
  return {'mean': {'psnr': psnr, 'ssim': 0.5, 'psnr_y': psnr + 1, 'ssim_y': 0.6,
                   'lpips': None}, 'tof': tof, 'flicker': 1.5, 'frames': {}}


@pytest.fixture
def report() -> dict:
  paths = tuple(Path(f'a/{t}.png') for t in range(4))
  clips = [clips_lib.Clip('a', paths, paths, (8, 8), (16, 16))]
  workdir_stage = {'workdir': 'runs/x', 'variant': 'tiny', 'scale': 1, 'num_neighbors': 2,
                   'use_alignment': False, 'use_attention': True, 'step': 7}
  return {
      'date': 'today', 'machine': 'a machine', 'sources': {'lq': 'LQ', 'gt': 'GT'},
      'protocol': report_lib.protocol_record('fmanet', 2, clips, None, None, '', 0),
      'methods': {'bicubic': methods.bicubic_method(2).info,
                  'net': {'kind': 'workdir', 'stages': [workdir_stage], 'bicubic_after': 2}},
      'results': {
          'bicubic': {'clips': {'a': _clip_entry(25.0, 0.5)}, 'ms_per_frame': None,
                      'mean': _clip_entry(25.0, 0.5)['mean'] | {'tof': 0.5, 'flicker': 1.5}},
          'net': {'clips': {'a': _clip_entry(float('inf'), None)}, 'ms_per_frame': 12.34,
                  'mean': _clip_entry(float('inf'), None)['mean']
                          | {'tof': None, 'flicker': 1.5}},
      },
      'pictures': [],
  }


def test_protocol_record_lists_the_dropped_frames(report):
  p = report['protocol']
  assert p['frames_included'] == {'a': ['1.png', '2.png']}
  assert p['frames_dropped'] == {'a': ['0.png', '3.png']}
  assert (p['num_frames_included'], p['num_frames_dropped'], p['crop_border']) == (2, 2, 2)
  assert p['lpips'].startswith('unavailable') and p['tile'] == 'whole frames'


def test_tables(report):
  summary = report_lib.summary_table(report).splitlines()
  assert summary[2] == ('| bicubic | 25.00 | 0.5000 | 26.00 | 0.6000 | unavailable | 0.500 '
                        '| 1.50 | n/a |')
  assert summary[3] == '| net | inf | 0.5000 | inf | 0.6000 | unavailable | n/a | 1.50 | 12 |'
  assert report_lib.clip_table(report, 'tof', 3).splitlines() == [
      '| method | a |', '| --- | ---: |', '| bicubic | 0.500 |', '| net | n/a |']


def test_written_files_hold_inf_as_a_string_and_describe_the_methods(report, tmp_path):
  report_lib.write(tmp_path, report)
  saved = json.loads((tmp_path / report_lib.METRICS_FILE).read_text())
  assert saved['results']['net']['mean']['psnr'] == 'inf'
  assert saved['protocol'] == json.loads(json.dumps(report['protocol']))
  md = (tmp_path / report_lib.RESULTS_FILE).read_text()
  assert "bicubic upsampling of the LQ frame (Keys cubic a = -0.5 (models/bicubic.py" in md
  assert ('- **net**: `runs/x` (tiny x1, K=2, no alignment, step 7), then bicubic x2'
          in md)
  assert '(`--protocol=fmanet`): 2 frames of 1 clips scored, 2 dropped.' in md
  assert sorted(p.name for p in tmp_path.iterdir()) == ['metrics.json', 'results.md']
