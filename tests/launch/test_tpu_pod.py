"""launch/tpu_pod.sh quotes every user-given path in the commands it runs on the
workers: a SRC_DIR or LOG_FILE cannot turn the remote `rm -rf` into another command.

The remote scripts of a dry run are executed here with rm, mkdir, tar, python3, cd
and tee replaced by shell functions that only record their arguments."""

import os
import subprocess

HOSTILE = 'x; rm -rf ~ #'
RECORDER = ''.join(f'{c}() {{ printf "{c}|%s\\n" "$*" >> "$RECORD"; }}; '
                   for c in ('rm', 'mkdir', 'tar', 'python3', 'cd', 'tee'))


def _remote_scripts(repo) -> list[str]:
  env = dict(os.environ, DRY_RUN='1', SRC_DIR=HOSTILE, LOG_FILE='a log; reboot')
  proc = subprocess.run(['bash', str(repo / 'launch' / 'tpu_pod.sh'), 'tpu', 'zone-a',
                         '--workdir=/w'], env=env, capture_output=True, text=True,
                        timeout=120, cwd=repo)
  assert proc.returncode == 0, proc.stderr
  scripts = []
  for line in proc.stdout.splitlines():
    if ' ssh ' not in line:
      continue
    # The dry run prints each argument as bash's printf %q: let bash read it back.
    argv = subprocess.run(['bash', '-c', 'eval "args=($1)"; printf "%s\\0" "${args[@]}"',
                           '_', line], capture_output=True, text=True, check=True).stdout
    (command,) = [a for a in argv.split('\0') if a.startswith('--command=')]
    scripts.append(command[len('--command='):])
  return scripts


def test_remote_commands_keep_hostile_paths_whole(repo, tmp_path):
  scripts = _remote_scripts(repo)
  assert len(scripts) == 2
  record = tmp_path / 'record'
  for script in scripts:
    subprocess.run(['bash', '-c', RECORDER + script], env=dict(os.environ, RECORD=str(record)),
                   check=True, timeout=60, cwd=tmp_path)
  calls = record.read_text().splitlines()
  assert [c for c in calls if c.startswith('rm|')] == [f'rm|-rf -- {HOSTILE}']
  assert f'mkdir|-p -- {HOSTILE}' in calls and f'cd|{HOSTILE}' in calls
  assert 'tee|-a a log; reboot' in calls
