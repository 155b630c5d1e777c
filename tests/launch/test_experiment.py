"""The experiment's own logic (launch/experiment.py): whole held-out clips, training
commands, claim checks, and the write-up's file handling."""

import importlib.util
import json
import subprocess
import sys

import numpy as np
import pytest

from clarity_jax.data import source_base
from clarity_jax.data import synthetic


@pytest.fixture(scope='module')
def experiment(repo):
  """launch/experiment.py (and experiment_docs.py, which it imports), loaded as
  modules: launch/ is a folder of scripts, not a package. Each is registered in
  sys.modules before it runs (dataclasses look their module up there) and removed
  afterwards."""
  names = ('experiment_docs', 'experiment')  # dependency first
  saved = {n: sys.modules.get(n) for n in names}
  try:
    for name in names:
      spec = importlib.util.spec_from_file_location(name, repo / 'launch' / f'{name}.py')
      module = importlib.util.module_from_spec(spec)
      sys.modules[name] = module
      spec.loader.exec_module(module)
    yield sys.modules['experiment']
  finally:
    for name, module in saved.items():
      if module is None:
        sys.modules.pop(name, None)
      else:
        sys.modules[name] = module


def test_render_clip_gives_consecutive_distinct_frames(experiment):
  photo = synthetic.load_photo('coffee')
  n, size = 6, 48
  clip = experiment.render_clip(photo, n, size, np.random.default_rng(3))
  assert clip.shape == (n, size, size, 3)
  # A reflected window would repeat a frame (t-1 == t+1 around the turn).
  for i in range(n):
    for j in range(i + 1, n):
      assert not np.array_equal(clip[i], clip[j]), (i, j)
  # Every frame of the source's (reflected) window is one of the clip's frames,
  # and the same generator state renders the same clip.
  spec = source_base.WindowSpec(num_frames=2 * n - 1, crop=size)
  with pytest.warns(source_base.ShortClipWarning):
    window = synthetic.SyntheticSource({'photo': photo}, spec, n).sample(
        np.random.default_rng(3))
  for frame in window:
    assert any(np.array_equal(frame, f) for f in clip)
  np.testing.assert_array_equal(
      clip, experiment.render_clip(photo, n, size, np.random.default_rng(3)))


def test_train_command_applies_the_same_budget_to_every_model(experiment, tmp_path):
  budget = {'variant': 'tiny', 'steps': 7, 'batch_size': 2, 'data.crop_size': 16,
            'learning_rate': None}
  commands = [experiment.train_command(m, tmp_path / m.key, budget)
              for m in experiment.MODELS]
  for model, command in zip(experiment.MODELS, commands):
    assert command[3].endswith(f'configs/{model.config}:runlocal,variant=tiny')
    assert f'--workdir={tmp_path / model.key}' in command
  shared = {tuple(c[5:len(c) - len(m.flags)]) for m, c in zip(experiment.MODELS, commands)}
  twins = [c for m, c in zip(experiment.MODELS, commands) if m.flags]
  assert [c[-1] for c in twins] == ['--config.seed=1']  # the joint model's second seed
  assert twins[0][3] == commands[0][3]
  assert shared == {('--config.num_train_steps=7', '--config.eval_every_steps=7',
                     '--config.checkpoint_every_steps=7', '--config.log_every_steps=7',
                     '--config.batch_size=2', '--config.data.crop_size=16')}


def test_labels_survive_the_names_flag(experiment):
  # evaluate --names is comma separated.
  assert all(',' not in m.label for m in experiment.MODELS)
  assert ',' not in experiment.TWO_STAGE


def test_stages_are_skipped_only_when_done_with_the_same_command(experiment, tmp_path):
  stages = experiment.Stages(tmp_path / 'stages.json')
  marker = tmp_path / 'marker'
  command = [sys.executable, '-c', f'open({str(marker)!r}, "a").write("x")']
  stages.run('make', command, marker)
  again = experiment.Stages(tmp_path / 'stages.json')  # as a re-run reads it
  assert again.run('make', command, marker) == stages.done['make']['seconds']
  assert marker.read_text() == 'x'  # not run twice
  again.run('make', command + ['changed'], marker)
  assert marker.read_text() == 'xx'
  with pytest.raises(RuntimeError, match='fails failed with exit status 3'):
    again.run('fails', [sys.executable, '-c', 'raise SystemExit(3)'])
  assert 'fails' not in json.loads((tmp_path / 'stages.json').read_text())


def _report(psnr: dict, ssim: dict, tof: dict) -> dict:
  return {'results': {k: {'mean': {'psnr': psnr[k], 'ssim': ssim[k], 'tof': tof[k]}}
                      for k in psnr}}


def test_claims_follow_the_numbers(experiment):
  joint, single = experiment.MODELS[0].label, 'single-frame K=0'
  report = _report({joint: 25.0, 'bicubic': 24.0, 'SR-only': 25.5, single: 24.5},
                   {joint: 0.80, 'bicubic': 0.70, 'SR-only': 0.79, single: 0.81},
                   {joint: 1.0, 'bicubic': 2.0, 'SR-only': 1.5, single: 1.2})
  lines = experiment.claims(report)
  assert len(lines) == 3  # only the methods present are compared
  assert '+1.00 dB PSNR, +0.1000 SSIM -> **holds** at' in lines[0]
  assert '-0.50 dB PSNR, +0.0100 SSIM -> **does not hold**' in lines[1]
  # Better PSNR but worse SSIM: not a win.
  assert '+0.50 dB PSNR, -0.0100 SSIM -> **does not hold**' in lines[2]
  assert 'tof -0.200 (lower for joint)' in lines[2]
  # With the second seed, leads within the seed-to-seed gap are inconclusive.
  twin = experiment.SEED_TWIN
  report['results'][twin] = {'mean': {'psnr': 24.4, 'ssim': 0.79, 'tof': 1.0}}
  lines = experiment.claims(report)
  assert lines[0].startswith('- Seed-to-seed spread of the joint model: 0.60 dB PSNR, '
                             '0.0100 SSIM')
  assert '+1.00 dB PSNR, +0.1000 SSIM -> **holds** at' in lines[1]
  report['results']['bicubic']['mean']['psnr'] = 24.5
  assert ('+0.50 dB PSNR, +0.1000 SSIM -> **holds, but within the seed spread '
          '(inconclusive)**') in experiment.claims(report)[1]
  # Clips where the joint model loses to bicubic are named.
  report['results'][joint]['clips'] = {'a': {'mean': {'psnr': 20.0}},
                                       'b': {'mean': {'psnr': 30.0}}}
  report['results']['bicubic']['clips'] = {'a': {'mean': {'psnr': 20.5}},
                                           'b': {'mean': {'psnr': 29.0}}}
  assert experiment.claims(report)[-1] == (
      '- Clips where the joint model is below bicubic in PSNR: a (-0.50 dB).')


def test_video_clips_come_only_from_the_video_dir_given(experiment, repo, tmp_path,
                                                         smooth_frames, write_video):
  videos = tmp_path / 'videos'
  videos.mkdir()
  write_video(videos / 'b.m4v', smooth_frames(4, 32, 48, seed=1))  # every container of files
  write_video(videos / 'a.mp4', smooth_frames(4, 32, 48))
  (videos / 'notes.txt').write_text('not a video')
  names = experiment.write_video_clips(tmp_path / 'hr', videos, 3, (24, 16), max_videos=5)
  assert names == ['video_a', 'video_b']
  for name in names:
    written = sorted((tmp_path / 'hr' / name).iterdir())
    assert [p.name for p in written] == [f'{t:08d}.png' for t in range(3)]
  # No --video_dir by default, and one that is not there stops the run before any work.
  run = lambda *args: subprocess.run(
      [sys.executable, str(repo / 'launch' / 'experiment.py'), *args], cwd=tmp_path,
      capture_output=True, text=True, timeout=300)
  out = run('--helpfull')
  assert "--video_dir: Folder of videos" in out.stdout and "(default: '')" in out.stdout
  out = run(f'--video_dir={tmp_path / "missing"}', f'--output={tmp_path / "out"}')
  assert out.returncode == 1
  assert out.stderr.strip().splitlines()[-1] == (
      f'error: {tmp_path / "missing"}: no such folder (--video_dir)')
  assert not (tmp_path / 'out').exists()


def _evaluation_report(eval_dir) -> dict:
  """A metrics.json of two methods on one clip, with one picture file."""
  (eval_dir / 'pictures').mkdir(parents=True)
  (eval_dir / 'pictures' / 'clip_0000.png').write_bytes(b'png')
  mean = {'psnr': 25.0, 'ssim': 0.8, 'psnr_y': 26.0, 'ssim_y': 0.81, 'lpips': None,
          'tof': 1.0, 'flicker': 2.0}
  result = {'mean': mean, 'ms_per_frame': 10.0,
            'clips': {'clip': {'mean': mean, 'tof': 1.0, 'flicker': 2.0}}}
  protocol = {'frames': 'all', 'name': 'basicsr', 'num_frames_included': 3, 'num_clips': 1,
              'num_frames_dropped': 0, 'max_frames': None, 'scale': 4, 'crop_border': 4,
              'averaging': 'per frame', 'ssim': 'Wang', 'lpips': 'unavailable',
              'tof': 'tOF', 'flicker': 'flicker', 'temporal_window': '2K+1',
              'tile': 'whole frames'}
  return {'date': '2024-01-01', 'machine': 'test', 'protocol': protocol,
          'results': {'joint (ClarityNetSR)': result, 'bicubic': result},
          'pictures': [{'clip': 'clip', 'frame': '0000.png', 'file': 'pictures/clip_0000.png',
                        'columns': ['LQ', 'GT']}]}


def test_write_docs_replaces_the_page_and_its_pictures(experiment, tmp_path):
  eval_dir, docs = tmp_path / 'evaluation', tmp_path / 'docs' / 'results.md'
  report = _evaluation_report(eval_dir)
  (tmp_path / 'docs' / 'results').mkdir(parents=True)
  (tmp_path / 'docs' / 'results' / 'stale.png').write_bytes(b'old')
  heldout = {'photos': ['coffee'], 'videos': ['video_street'], 'num_frames': 3,
             'photo_size': [64, 64], 'video_size': [16, 24], 'scale': 4, 'seed': 0,
             'video_dir': 'some/videos'}
  budget = {'variant': 'tiny', 'steps': 2, 'batch_size': 2, 'crop_size': 16,
            'learning_rate': 1e-3, 'warmup_steps': 1, 'num_neighbors': 1, 'scale': 4}
  experiment.experiment_docs.write_docs(
      report, eval_dir, docs, budget=budget, heldout=heldout,
      timings={'train joint': 60.0, 'evaluate': 30.0}, command='launch/experiment.sh',
      claims=['- a claim.'])
  text = docs.read_text()
  assert text.startswith('# Results: the joint model against its baselines\n')
  assert '- a claim.' in text and 'from some/videos' in text
  assert 'docs/evaluation.md' in text and 'DESIGN' not in text
  assert '![clip 0000.png](results/clip_0000.png)' in text
  assert sorted(p.name for p in (tmp_path / 'docs').iterdir()) == ['results', 'results.md']
  assert [p.name for p in (tmp_path / 'docs' / 'results').iterdir()] == ['clip_0000.png']
  # A missing picture fails the write-up and leaves the earlier page as it was.
  (eval_dir / 'pictures' / 'clip_0000.png').unlink()
  with pytest.raises(FileNotFoundError):
    experiment.experiment_docs.write_docs(
        report, eval_dir, docs, budget=budget, heldout=dict(heldout, videos=[]),
        timings={}, command='x', claims=[])
  assert docs.read_text() == text
  assert sorted(p.name for p in (tmp_path / 'docs').iterdir()) == ['results', 'results.md']
