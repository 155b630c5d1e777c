"""Malformed and unusual input to every command: each case must end with exit status
1 and one line 'error: ...' naming the file or flag at fault, no traceback, and
nothing under the output name (nor a hidden temporary beside it).

The cases of one command run in one process (a driver that parses the flags and
calls the command's main() per case, as `python -m` would): a process per case would
cost the suite minutes of imports.
"""

import json
import os
from pathlib import Path
import subprocess
import sys

import numpy as np
import pytest

from clarity_jax.media import frames
from clarity_jax.inference import bundle

_DRIVER = r'''
import contextlib, importlib, io, json, sys, traceback
from absl import flags
from clarity_jax.cli import common
command = importlib.import_module('clarity_jax.cli.' + sys.argv[1])
results = []
for argv in json.loads(sys.argv[2]):
  flags.FLAGS.unparse_flags()
  stderr = io.StringIO()
  try:
    with contextlib.redirect_stderr(stderr):
      command.main(common.parse_flags(['clarity_jax.' + sys.argv[1], *argv]))
    results.append({'status': 0, 'stderr': stderr.getvalue()})
  except SystemExit as e:
    message = e.code if isinstance(e.code, str) else None
    results.append({'status': 1 if message else e.code, 'message': message,
                    'stderr': stderr.getvalue()})
  except BaseException:  # the traceback the test must never see
    results.append({'status': 'traceback', 'message': traceback.format_exc()})
print('RESULTS ' + json.dumps(results))
'''


def _run_cases(repo: Path, command: str, cases: list[list[str]]) -> list[dict]:
  env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL='2')
  proc = subprocess.run([sys.executable, '-c', _DRIVER, command, json.dumps(cases)],
                        cwd=repo, env=env, capture_output=True, text=True, timeout=600)
  line = [x for x in proc.stdout.splitlines() if x.startswith('RESULTS ')]
  assert line, proc.stderr[-3000:]
  return json.loads(line[0][len('RESULTS '):])


def _check(results: list[dict], cases: list[tuple], root: Path) -> None:
  assert len(results) == len(cases)
  for result, (args, must_say, output) in zip(results, cases):
    where = f'{args}: {result}'
    assert result['status'] == 1, where
    message = result['message']
    assert message.startswith('error: ') and '\n' not in message.strip(), where
    for text in must_say:
      assert str(text) in message, where
    if output is not None:
      assert not Path(output).exists(), where
      hidden = [p.name for p in Path(output).parent.glob(f'.{Path(output).name}*')]
      assert hidden == [], where
  leftovers = [p for p in root.rglob('.*tmp*')]
  assert leftovers == []


def _png(path: Path, h: int = 24, w: int = 32, seed: int = 0) -> Path:
  path.parent.mkdir(parents=True, exist_ok=True)
  frames.write_image(path, np.random.default_rng(seed).random((h, w, 3)))
  return path


def _clip(folder: Path, n: int = 3, h: int = 24, w: int = 32) -> Path:
  for i in range(n):
    _png(folder / f'{i:04d}.png', h, w, seed=i)
  return folder


def _bomb(path: Path) -> Path:
  """A small PNG whose header declares 30000 x 30000 pixels."""
  from PIL import Image  # pylint: disable=g-import-not-at-top
  Image.new('1', (30000, 30000)).save(path)
  return path


@pytest.fixture(scope='module')
def world(tmp_path_factory, random_params, smooth_frames, write_video) -> dict[str, Path]:
  """Inputs good and bad, and a tiny x2 bundle, shared by every case."""
  root = tmp_path_factory.mktemp('malformed')
  spec = bundle.ModelSpec('tiny', scale=2, num_neighbors=1)
  _, params = random_params(spec, seed=3)
  bundle.save_bundle(root / 'tiny', spec, params, step=0)
  w = {'root': root, 'bundle': root / 'tiny'}
  w['video'] = write_video(root / 'clip.mp4', smooth_frames(4, 24, 32))
  w['clip'] = _clip(root / 'hr' / 'clip')
  w['lq'] = _clip(root / 'lq' / 'clip', h=12, w=16)
  w['gt'] = _clip(root / 'gt' / 'clip')
  w['empty_dir'] = root / 'empty'
  w['empty_dir'].mkdir()
  w['empty_mp4'] = root / 'empty.mp4'
  w['empty_mp4'].write_bytes(b'')
  w['text_mp4'] = root / 'text.mp4'
  w['text_mp4'].write_text('not a video at all\n' * 20)
  w['notes'] = root / 'notes.txt'
  w['notes'].write_text('hello')
  w['truncated_png'] = _png(root / 'trunc' / 'clip' / '0000.png', 48, 64)
  _png(root / 'trunc' / 'clip' / '0001.png', 48, 64)
  data = w['truncated_png'].read_bytes()
  w['truncated_png'].write_bytes(data[:len(data) // 2])
  w['bomb'] = _bomb(root / 'bomb.png')
  w['mixed'] = _clip(root / 'mixed' / 'clip')
  _png(w['mixed'] / '0009.png', 30, 30)
  w['user_file'] = root / 'mine.mp4'
  w['user_file'].write_bytes(b'my own file')
  w['user_dir'] = root / 'mine'
  (w['user_dir'] / 'keep.txt').parent.mkdir()
  (w['user_dir'] / 'keep.txt').write_text('keep me')
  w['bad_json'] = root / 'bad_bundle'
  w['bad_json'].mkdir()
  (w['bad_json'] / 'bundle.json').write_text('{ not json')
  w['no_params'] = root / 'no_params'
  w['no_params'].mkdir()
  (w['no_params'] / 'bundle.json').write_text((w['bundle'] / 'bundle.json').read_text())
  return w


def test_enhance(repo, world):
  w, out = world, world['root'] / 'out'
  b = f'--bundle={w["bundle"]}'
  cases = [
      ([b, f'--input={w["root"]}/missing.mp4', f'--output={out}/a.mp4'],
       ['missing.mp4', 'no such file'], out / 'a.mp4'),
      ([b, f'--input={w["empty_mp4"]}', f'--output={out}/a.mp4'],
       [w['empty_mp4'], 'empty'], out / 'a.mp4'),
      ([b, f'--input={w["text_mp4"]}', f'--output={out}/a.mp4'],
       [w['text_mp4']], out / 'a.mp4'),
      ([b, f'--input={w["notes"]}', f'--output={out}/a.mp4'],
       [w['notes'], 'unsupported input'], out / 'a.mp4'),
      ([b, f'--input={w["truncated_png"].parent}', f'--output={out}/frames'],
       [w['truncated_png'], 'not a readable image'], out / 'frames'),
      ([b, f'--input={w["empty_dir"]}', f'--output={out}/frames'],
       [w['empty_dir']], out / 'frames'),
      ([b, f'--input={w["mixed"]}', f'--output={out}/frames'], [w['mixed']], out / 'frames'),
      ([b, f'--input={w["bomb"]}', f'--output={out}/big.png'],
       [w['bomb'], 'megapixel limit'], out / 'big.png'),
      ([b, f'--input={w["video"]}', f'--output={out}/a.webm'],
       ['a.webm', '.webm cannot hold'], out / 'a.webm'),
      ([b, f'--input={w["video"]}', f'--output={out}/a.png'],
       ['a.png', 'an image output needs an image input'], out / 'a.png'),
      ([b, f'--input={w["video"]}', f'--output={w["video"]}', '--overwrite'],
       ['would replace the input'], None),
      ([b, f'--input={w["clip"]}', f'--output={w["root"] / "hr"}', '--overwrite'],
       ['would replace the input folder'], None),
      ([b, f'--input={w["video"]}', f'--output={w["user_file"]}'],
       [w['user_file'], 'already exists'], None),
      ([b, f'--input={w["video"]}', f'--output={w["user_file"]}', '--overwrite'],
       [w['user_file'], 'not an earlier clarity_jax.enhance output'], None),
      ([b, f'--input={w["clip"]}', f'--output={w["user_dir"]}', '--overwrite'],
       [w['user_dir'], 'not an earlier clarity_jax.enhance output'], None),
      ([f'--bundle={w["root"]}/nobundle', f'--input={w["video"]}', f'--output={out}/a.mp4'],
       ['nobundle'], out / 'a.mp4'),
      ([f'--bundle={w["bad_json"]}', f'--input={w["video"]}', f'--output={out}/a.mp4'],
       [w['bad_json'] / 'bundle.json'], out / 'a.mp4'),
      ([f'--bundle={w["no_params"]}', f'--input={w["video"]}', f'--output={out}/a.mp4'],
       [w['no_params']], out / 'a.mp4'),
      ([b, f'--input={w["video"]}', f'--output={out}/a.mp4', '--uncertainty'],
       [w['bundle'], 'no uncertainty head'], out / 'a.mp4'),
      ([b, f'--input={w["video"]}', f'--output={out}/a.mp4', '--tile=32',
        '--tile_overlap=16'], ['--tile_overlap'], out / 'a.mp4'),
      ([b, f'--input={w["video"]}', f'--output={out}/a.mp4', '--crf=99'], ['crf'],
       out / 'a.mp4'),
      ([b, f'--input={w["video"]}'], ['--output'], None),
      ([b, f'--input={w["video"]}', f'--output={out}/a.mp4', 'stray'],
       ['unexpected arguments'], out / 'a.mp4'),
  ]
  _check(_run_cases(repo, 'enhance', [c[0] for c in cases]), cases, w['root'])
  assert (w['user_dir'] / 'keep.txt').read_text() == 'keep me'
  assert w['user_file'].read_bytes() == b'my own file'


def test_degrade(repo, world):
  w, out = world, world['root'] / 'degraded'
  cases = [
      ([f'--input={w["root"]}/missing', f'--output={out}'], ['missing'], out),
      ([f'--input={w["empty_dir"]}', f'--output={out}'], [w['empty_dir']], out),
      ([f'--input={w["truncated_png"].parent}', f'--output={out}'],
       [w['truncated_png'], 'not a readable image'], out),
      ([f'--input={w["mixed"]}', f'--output={out}'], [w['mixed']], out),
      ([f'--input={w["clip"]}', f'--output={w["user_dir"]}'], [w['user_dir']], None),
      ([f'--input={w["clip"]}', f'--output={out}', '--scale=3'], ['scale'], out),
      ([f'--input={w["clip"]}', f'--output={out}', '--codec=vp9'], ['codec'], out),
      ([f'--input={w["bomb"].parent / "nothing_here"}', f'--output={out}'], ['nothing_here'],
       out),
  ]
  _check(_run_cases(repo, 'degrade', [c[0] for c in cases]), cases, w['root'])
  assert (w['user_dir'] / 'keep.txt').read_text() == 'keep me'


def test_evaluate(repo, world):
  w, out = world, world['root'] / 'eval'
  b = f'--bundle={w["bundle"]}'
  cases = [
      ([b, f'--lq={w["root"]}/missing', f'--gt={w["gt"]}', f'--output={out}'],
       ['missing'], out),
      ([b, f'--lq={w["lq"]}', f'--gt={w["root"]}/nogt', f'--output={out}'], ['nogt'], out),
      ([b, f'--lq={w["truncated_png"].parent}', f'--gt={w["gt"]}', f'--output={out}'],
       [], out),
      ([b, f'--lq={w["lq"]}', f'--gt={w["mixed"]}', f'--output={out}'], [], out),
      ([f'--bundle={w["bad_json"]}', f'--lq={w["lq"]}', f'--gt={w["gt"]}',
        f'--output={out}'], [w['bad_json'] / 'bundle.json'], out),
      ([b, f'--lq={w["lq"]}', f'--gt={w["gt"]}', f'--output={w["user_dir"]}'],
       [w['user_dir']], None),
      ([b, f'--lq={w["lq"]}', f'--gt={w["gt"]}', f'--output={out}', '--scale=3'],
       ['scale'], out),
  ]
  _check(_run_cases(repo, 'evaluate', [c[0] for c in cases]), cases, w['root'])


def test_export_and_validate(repo, world):
  w, out = world, world['root'] / 'bundle_out'
  cases = [
      ([f'--workdir={w["root"]}/norun', f'--output={out}'], ['norun'], out),
      ([f'--workdir={w["empty_dir"]}', f'--output={out}'], [w['empty_dir']], out),
      ([f'--workdir={w["empty_dir"]}', f'--output={out}', '--step=7'],
       [w['empty_dir']], out),
      ([f'--workdir={w["empty_dir"]}'], ['--output'], None),
  ]
  _check(_run_cases(repo, 'export', [c[0] for c in cases]), cases, w['root'])
  cases = [
      ([f'--clips={w["root"]}/gone.mp4', f'--bundle={w["bundle"]}'], ['gone.mp4'], None),
      ([f'--clips={w["text_mp4"]}', f'--bundle={w["bundle"]}'], [w['text_mp4']], None),
      ([f'--clips={w["video"]}', f'--bundle={w["bad_json"]}'],
       [w['bad_json'] / 'bundle.json'], None),
      ([f'--clips={w["video"]}', '--settings=extreme'], ['extreme'], None),
  ]
  _check(_run_cases(repo, 'validate', [c[0] for c in cases]), cases, w['root'])
