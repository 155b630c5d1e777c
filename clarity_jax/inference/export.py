"""Turns a training checkpoint into an inference bundle (see clarity_jax/bundle.py).

  python -m clarity_jax.export --workdir=DIR --output=BUNDLE [--step=N] [--saved_model]

The EMA copy of the parameters is exported when the run kept one (it restores
better than the raw weights); the model config comes from the checkpoint's own
record, so the training config file is not needed. --saved_model adds a
TensorFlow SavedModel (jax2tf) under BUNDLE/saved_model for TF Serving, taking
any batch and any height and width that are multiples of the model's size
multiple (bundle.json says which), checked numerically against the JAX model
before the bundle is moved into place.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

from absl import app
from absl import flags
from absl import logging
import jax
import ml_collections
import numpy as np
import orbax.checkpoint as ocp
from etils import epath

from clarity_jax.inference import bundle
from clarity_jax.train import checkpoints as checkpointing
from clarity_jax.cli import common as cli_errors
from clarity_jax.train import step as ts
from clarity_jax.data import frames
from clarity_jax.models import claritynet
from clarity_jax import errors


# LQ sizes, in units of the size multiple, the SavedModel is checked at before the
# bundle is moved into place: two shapes, so that a size baked in shows up.
_CHECK_SIZES = ((2, 3), (5, 1))


def size_multiple(model: claritynet.ClarityNetSR) -> int:
  """What the SavedModel's height and width must be multiples of.

  jax2tf traces the model once for symbolic h, w. For any h, the edge padding to
  even sides and then to the flow pyramid's 2**levels gives nested mod/floordiv
  sizes that JAX's symbolic shapes cannot prove non-negative (the reshape in
  dm-pix's interpolation fails); for multiples of both, every pad is zero.
  """
  flow = model.flow.multiple if model.flow is not None else 1
  return math.lcm(model.pad_multiple, flow)


def saved_model_extras(spec: bundle.ModelSpec, params: Any):
  """An `extras` callback for save_bundle writing BUNDLE/saved_model (jax2tf).

  The SavedModel takes float32 [batch, 2K+1, h, w, 3] with the batch free and h, w
  any multiples of `size_multiple` (2**flow levels: 4 for tiny, 16 for base; 2
  without alignment); other sizes stop with an error saying so. Clients tile
  larger frames as enhance does. It is checked against the JAX model on random
  windows of two sizes; a disagreement beyond float tolerance stops the export.
  """

  def write(tmp: Path) -> dict[str, Any]:
    import tensorflow as tf  # pylint: disable=g-import-not-at-top
    from jax.experimental import jax2tf  # pylint: disable=g-import-not-at-top
    from flax import nnx  # pylint: disable=g-import-not-at-top

    model = spec.create()
    graphdef, _ = nnx.split(model)
    m, t = size_multiple(model), spec.num_frames
    forward = lambda p, lq: nnx.merge(graphdef, p)(lq)
    # TF tracks variables by string keys only ('.' not '/': those name scopes).
    flat = {k.replace('/', '.'): v for k, v in bundle.flatten_params(params).items()}
    flat_forward = lambda f, lq: forward(bundle.unflatten_params(
        {k.replace('.', '/'): v for k, v in f.items()}, params), lq)
    tf_fn = jax2tf.convert(flat_forward,
                           polymorphic_shapes=[None, f'(b, {t}, {m}*h, {m}*w, 3)'],
                           with_gradient=False)
    module = tf.Module()
    module.params = {k: tf.Variable(v, trainable=False, name=k) for k, v in flat.items()}

    def restore(lq: tf.Tensor) -> tf.Tensor:
      # Checked first: XLA's own error for other sizes ('shape refinement failed')
      # does not say what the model wants.
      check = tf.debugging.assert_equal(
          tf.shape(lq)[2:4] % m, 0, message=f'lq height and width must be multiples of {m}')
      with tf.control_dependencies([check]):
        return tf_fn(module.params, tf.identity(lq))

    module.restore = tf.function(
        restore, autograph=False,
        input_signature=[tf.TensorSpec([None, t, None, None, 3], tf.float32, name='lq')])
    tf.saved_model.save(module, str(tmp / 'saved_model'),
                        signatures={'serving_default': module.restore})
    loaded = tf.saved_model.load(str(tmp / 'saved_model'))  # keep it: it owns the variables
    rng = np.random.default_rng(0)
    err = 0.0
    for h, w in _CHECK_SIZES:
      window = rng.random((2, t, h * m, w * m, 3), np.float32)
      want = np.asarray(jax.jit(forward)(params, window))
      got = loaded.restore(tf.constant(window)).numpy()
      err = max(err, float(np.max(np.abs(got - want))))
    sizes = ', '.join(f'{h * m}x{w * m}' for h, w in _CHECK_SIZES)
    if err > 1e-4:
      raise bundle.BundleError(tmp / 'saved_model', f'differs from the JAX model by {err:.2e} '
                        f'(max abs on windows of {sizes})')
    logging.info('SavedModel agrees with JAX: max abs difference %.2e (%s)', err, sizes)
    return {'saved_model': {'path': 'saved_model', 'signature': 'serving_default',
                            'input': 'lq', 'checked_max_abs_diff': err,
                            'input_shape': [None, t, None, None, 3],
                            'size_multiple': m}}

  return write


def export(workdir: str | os.PathLike, output: str | os.PathLike, step: int | None = None,
           saved_model: bool = False) -> bundle.BundleInfo:
  params, config, step, weights = checkpointing.restore_params(workdir, step)
  spec = bundle.ModelSpec.from_config(config)
  extras = saved_model_extras(spec, params) if saved_model else None
  return bundle.save_bundle(output, spec, params, step=step, weights=weights, extras=extras)


def define_flags() -> None:
  """The CLI's flags, defined only when run as a program (see enhance.define_flags)."""
  flags.DEFINE_string('workdir', None, 'Training workdir (holds checkpoints/).')
  flags.DEFINE_string('output', None, 'Bundle folder to write.')
  flags.DEFINE_integer('step', None, 'Checkpoint step; default: the latest.')
  flags.DEFINE_bool('saved_model', False, 'Also write a TensorFlow SavedModel (jax2tf) '
                    'taking any batch and any h, w that are multiples of its size multiple.')
  flags.mark_flags_as_required(['workdir', 'output'])


@cli_errors.exit_on_error()
def main(argv: list[str]) -> None:
  cli_errors.start(argv, quiet=True)
  f = flags.FLAGS
  info = export(f.workdir, f.output, f.step, f.saved_model)
  print(f'{f.output}: {info.model.variant} x{info.model.scale} '
        f'K={info.model.num_neighbors}, step {info.step}, {info.weights} weights, '
        f'sha256 {info.params_sha256[:12]}', flush=True)


if __name__ == '__main__':
  define_flags()
  app.run(main)
