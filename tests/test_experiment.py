"""The experiment's own logic: whole held-out clips, training commands, claim checks."""

import json
import sys

import numpy as np
import pytest

from clarity_jax.data import sources

from conftest import REPO
sys.path.insert(0, str(REPO / 'launch'))
import experiment  # launch/experiment.py


def test_render_clip_gives_consecutive_distinct_frames():
  photo = sources.load_photo('coffee')
  n, size = 6, 48
  clip = experiment.render_clip(photo, n, size, np.random.default_rng(3))
  assert clip.shape == (n, size, size, 3)
  # A reflected window would repeat a frame (t-1 == t+1 around the turn).
  for i in range(n):
    for j in range(i + 1, n):
      assert not np.array_equal(clip[i], clip[j]), (i, j)
  # Every frame of the source's (reflected) window is one of the clip's frames,
  # and the same generator state renders the same clip.
  spec = sources.WindowSpec(num_frames=2 * n - 1, crop=size)
  with pytest.warns(sources.ShortClipWarning):
    window = sources.SyntheticSource({'photo': photo}, spec, n).sample(
        np.random.default_rng(3))
  for frame in window:
    assert any(np.array_equal(frame, f) for f in clip)
  np.testing.assert_array_equal(
      clip, experiment.render_clip(photo, n, size, np.random.default_rng(3)))


def test_train_command_applies_the_same_budget_to_every_model(tmp_path):
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


def test_labels_survive_the_names_flag():
  # evaluate --names is comma separated.
  assert all(',' not in m.label for m in experiment.MODELS)
  assert ',' not in experiment.TWO_STAGE


def test_stages_are_skipped_only_when_done_with_the_same_command(tmp_path):
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


def test_claims_follow_the_numbers():
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
