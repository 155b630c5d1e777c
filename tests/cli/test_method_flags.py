"""cli/method_flags: evaluate and validate choose their methods with the same flags,
defined once, and refuse a wrong --names count with the same line."""

import json
import os
import subprocess
import sys

# Imports one command (each defines its flags on absl's global FLAGS, so one per
# process), prints where and how the method flags are defined, then runs the
# command with two bundles and one name.
_DRIVER = r'''
import importlib, json, sys
from absl import flags
from clarity_jax.cli import common
name, argv = sys.argv[1], json.loads(sys.argv[2])
command = importlib.import_module('clarity_jax.cli.' + name)
where = {f: (flags.FLAGS.find_module_defining_flag(f), flags.FLAGS[f].help,
             flags.FLAGS[f].default) for f in ('bundle', 'workdir', 'names')}
try:
  command.main(common.parse_flags(['clarity_jax.' + name, *argv]))
  message = None
except SystemExit as e:
  message = e.code
print('RESULT ' + json.dumps({'flags': where, 'message': message}))
'''


def test_evaluate_and_validate_share_the_method_flags_and_their_errors(repo, tmp_path):
  common = ['--bundle=a.bundle,b.bundle', '--names=one']
  argv = {'evaluate': [*common, f'--lq={tmp_path}/lq', f'--gt={tmp_path}/gt',
                       f'--output={tmp_path}/out'],
          'validate': [*common, f'--clips={tmp_path}/clip.mp4', f'--cache={tmp_path}/cache']}
  results = {}
  for name, args in argv.items():
    proc = subprocess.run([sys.executable, '-c', _DRIVER, name, json.dumps(args)], cwd=repo,
                          env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL='3'),
                          capture_output=True, text=True, timeout=300)
    line = [x for x in proc.stdout.splitlines() if x.startswith('RESULT ')]
    assert line, proc.stderr[-3000:]
    results[name] = json.loads(line[0][len('RESULT '):])
  evaluate, validate = results['evaluate']['flags'], results['validate']['flags']
  assert evaluate == validate
  for flag, (module, help_text, default) in evaluate.items():
    assert module == 'clarity_jax.cli.method_flags', flag
    assert help_text and default == [], flag
  assert 'RUN@STEP' in evaluate['workdir'][1]
  # Refused before any work: no output, no degraded sets.
  for name in ('evaluate', 'validate'):
    assert results[name]['message'] == (
        'error: --names: 1 names for 2 methods (--bundle then --workdir)'), name
  assert not (tmp_path / 'out').exists() and not (tmp_path / 'cache').exists()
