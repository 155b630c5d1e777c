"""Fixtures of the tools tests: the benchmark command where TensorFlow is absent."""

import json
import subprocess

import pytest


@pytest.fixture(scope='session')
def benchmark_without_tensorflow(repo, script, command_env):
  """benchmark_without_tensorflow(*flags) -> the JSON object that `python -m
  clarity_jax.benchmark *flags` prints with TensorFlow made unimportable, as on the
  accelerator machines; the command must succeed."""
  def run(*flags: str) -> dict:
    out = subprocess.run(script('without_tensorflow', '-m', 'clarity_jax.benchmark', *flags),
                         cwd=repo, env=command_env, capture_output=True, text=True,
                         timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout.strip().splitlines()[-1])
  return run
