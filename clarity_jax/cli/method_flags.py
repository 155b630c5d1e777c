"""The flags that choose the methods scored against bicubic: --bundle, --workdir and
--names, defined once for evaluate and validate (the same names, meanings and help).

Not in common.py: only these two commands need the shipped model's path, and the
others would import the model code for nothing.
"""

from __future__ import annotations

from typing import NamedTuple

from absl import flags

from clarity_jax.evaluation import methods as methods_lib
from clarity_jax.inference import shipped


class MethodFlags(NamedTuple):
  bundle: flags.FlagHolder[list[str]]
  workdir: flags.FlagHolder[list[str]]
  names: flags.FlagHolder[list[str]]

  def chosen(self) -> tuple[list[str], list[str], list[str]]:
    """(bundles, workdirs, names) as given; with neither --bundle nor --workdir, the
    model shipped with the package, labelled with its name."""
    bundles, names = self.bundle.value, self.names.value
    if not bundles and not self.workdir.value:
      bundles, names = [str(shipped.bundle_path())], names or [shipped.NAME]
    return bundles, self.workdir.value, names

  def specs(self) -> list[tuple[str, str, str | None]]:
    """methods.method_specs of the chosen methods (a wrong count of --names fails here)."""
    return methods_lib.method_specs(*self.chosen())


def define_method_flags() -> MethodFlags:
  return MethodFlags(
      bundle=flags.DEFINE_list(
          'bundle', [], 'Inference bundles to score (clarity_jax.export), comma separated; '
          'A+B runs A, then B on its output (a two-stage deblur -> SR). With neither '
          '--bundle nor --workdir: the model shipped with the package.'),
      workdir=flags.DEFINE_list(
          'workdir', [], 'Training workdirs to score, comma separated: RUN (its latest '
          'checkpoint) or RUN@STEP; A+B chains two as for --bundle.'),
      names=flags.DEFINE_list(
          'names', [], 'Labels of the methods, one per --bundle then --workdir entry, in '
          'order (default: their folder names).'))
