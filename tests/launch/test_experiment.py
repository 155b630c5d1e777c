"""The experiment's own logic (launch/experiment.py, experiment_docs.py): the training
commands, the methods scored, and verdicts that follow from the seed spread."""

import importlib.util
import json
import sys

import pytest

from clarity_jax import config as config_lib


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


def _flag(command, name):
  return next(a.split('=', 1)[1] for a in command if a.startswith(f'--{name}='))


def test_every_network_trains_its_config_on_the_shipped_recipe_and_budget(experiment, repo,
                                                                         tmp_path):
  shipped = config_lib.get_config(repo / 'configs' / 'shipped.py')
  for network in experiment.NETWORKS:
    command = experiment.train_command(network, tmp_path / network.key, 'a.mp4,b', 'c.mp4',
                                       2000)
    assert _flag(command, 'config.data.path') == 'a.mp4,b'
    assert _flag(command, 'config.data.val_path') == 'c.mp4'
    path, _, arg = _flag(command, 'config').partition(':')
    config = config_lib.get_config(path, arg or None)
    # The recipe: what every network shares with the shipped one.
    assert config.data.source == shipped.data.source == 'footage'
    assert config.learning_rate == shipped.learning_rate
    assert config.data.crop_size == shipped.data.crop_size
    assert int(_flag(command, 'config.num_train_steps')) == 2000
    assert config.batch_size == shipped.batch_size
  seeds = {n.key: n.flags for n in experiment.NETWORKS}
  assert seeds['joint_seed1'] == ('--config.seed=1',) and seeds['joint'] == ()


def test_the_two_stage_method_is_the_deblur_bundle_then_the_sr_one(experiment, tmp_path):
  specs = experiment.method_bundles(tmp_path)
  assert specs['two_stage'] == f'{tmp_path / "deblur_only"}+{tmp_path / "sr_only"}'
  assert specs['joint'] == str(tmp_path / 'joint')
  assert set(specs) == {n.key for n in experiment.NETWORKS} | {'two_stage'}


def _outputs(tmp_path, gains, tof=None, lines=None):
  """An experiment folder as its stages leave it: {method: (mild, moderate, heavy)}."""
  tof, lines = tof or {}, lines or {}
  for method, per_setting in gains.items():
    folder = tmp_path / 'validation' / method
    t = tof.get(method, 0.5)
    validation = {}
    for setting, gain in zip(('mild', 'moderate', 'heavy'), per_setting):
      rows = {'clip_a': {'gain_psnr': gain + 0.1, 'gain_ssim': 0.01},
              'clip_b': {'gain_psnr': gain - 0.1, 'gain_ssim': 0.01},
              'mean': {'gain_psnr': gain, 'gain_ssim': 0.01}}
      validation[setting] = {method: rows}
      (folder / setting).mkdir(parents=True)
      metrics = {'results': {method: {'clips': {'clip_a': {'tof': t}, 'clip_b': {'tof': t}}},
                             'bicubic': {'clips': {'clip_a': {'tof': 0.6}}}}}
      (folder / setting / 'metrics.json').write_text(json.dumps(metrics))
    (folder / 'validation.json').write_text(json.dumps(validation))
  (tmp_path / 'line_scores.json').write_text(json.dumps({m: lines.get(m, 1.1) for m in gains}))
  return tmp_path


def test_verdicts_follow_the_seed_spread(experiment, tmp_path):
  docs = sys.modules['experiment_docs']
  out = _outputs(tmp_path, {
      'joint': (0.40, 0.55, 0.40), 'joint_seed1': (0.42, 0.54, 0.36),  # spread .02 .01 .04
      'sr_only': (0.66, 0.15, 0.39),   # refuted, holds, inconclusive
      'single_frame': (0.30, 0.40, 0.30),  # holds everywhere
      'no_attention': (0.39, 0.555, 0.41)},  # within the spread everywhere
      tof={'joint': 1.40, 'joint_seed1': 1.36, 'single_frame': 1.30},  # tOF spread .04
      lines={'joint': 8.1, 'single_frame': 3.0, 'sr_only': 0.65})
  table = docs.load(out)
  assert docs.spread(table, 'mild') == pytest.approx(0.02)
  lines = '\n'.join(docs.claim_lines(table, experiment.LABELS))
  assert ('**Joint beats SR-only: mixed: refuted at mild, holds at moderate, inconclusive '
          'at heavy.**') in lines
  assert '**Multi-frame fusion (K=2) beats single-frame: holds.**' in lines
  assert ('*... and is steadier over time (lower tOF): refuted.* tOF joint vs single-frame '
          'K=0: mild 1.400 vs 1.300 (seed spread 0.040)') in lines
  assert 'single-frame K=0 (3.0), joint (8.1) draw' in lines and 'SR-only (0.65)' in lines
  assert '**Attention fusion helps: inconclusive.**' in lines
  assert 'deblur' not in lines  # no numbers, no verdict


def test_the_page_holds_the_tables(experiment, tmp_path):
  docs = sys.modules['experiment_docs']
  out = _outputs(tmp_path / 'out', {
      'joint': (0.4, 0.55, 0.4), 'joint_seed1': (0.4, 0.54, 0.4),
      'two_stage': (0.1, 0.2, 0.3)})
  page = tmp_path / 'baselines.md'
  docs.write_docs(out, page, labels=experiment.LABELS, command='launch/experiment.sh X',
                  steps=2000)
  text = page.read_text()
  assert '| two-stage deblur -> SR | +0.10 | +0.20 | +0.30 |' in text
  assert 'for 2000 steps' in text and '| joint | moderate | +0.65 | +0.45 |' in text
  assert 'moderate 0.01 dB' in text  # the seed spread the verdicts use
