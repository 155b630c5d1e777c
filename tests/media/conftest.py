"""Fixtures of the media tests."""

import pathlib

import pytest


@pytest.fixture(scope='session')
def leftovers():
  """leftovers(folder) -> the hidden names in a folder: the temporaries a writer must
  not leave behind."""
  return lambda folder: sorted(p.name for p in pathlib.Path(folder).iterdir()
                               if p.name.startswith('.'))
