"""The jax2tf SavedModel written into a bundle by `export --saved_model`, for TF Serving.

It takes any batch and any height and width that are multiples of the model's
size multiple (bundle.json says which), and is checked numerically against the
JAX model before the bundle is moved into place. The one inference module that
imports TensorFlow, and only inside the writer: enhance and evaluate run where
TensorFlow is absent.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

from absl import logging
import jax
import numpy as np

from clarity_jax.inference import bundle
from clarity_jax.models import claritynet

# LQ sizes, in units of the size multiple, the SavedModel is checked at before the
# bundle is moved into place: two shapes, so that a size baked in shows up.
_CHECK_SIZES = ((2, 3), (5, 1))


def size_multiple(model: claritynet.ClarityNetSR) -> int:
  """What the SavedModel's height and width must be multiples of: the model's own
  padding multiple. jax2tf traces the model once for symbolic h, w; for any h, the
  padding gives mod/floordiv sizes that JAX's symbolic shapes cannot prove
  non-negative, and for multiples of it every pad is zero."""
  return model.pad_multiple


def saved_model_extras(spec: bundle.ModelSpec, params: Any
                       ) -> Callable[[Path, str], dict[str, Any]]:
  """An `extras` callback for save_bundle writing BUNDLE/saved_model (jax2tf).

  The SavedModel takes float32 [batch, 2K+1, h, w, 3] with the batch free and h, w
  any multiples of `size_multiple` (2**flow levels: 4 for tiny, 16 for base; 2
  without alignment); other sizes stop with an error saying so. Clients tile
  larger frames as enhance does. It is checked against the JAX model on random
  windows of two sizes; a disagreement beyond float tolerance stops the export.
  """

  def write(tmp: Path, params_sha256: str) -> dict[str, Any]:  # pylint: disable=unused-argument
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

    def enhance(lq: tf.Tensor) -> tf.Tensor:
      # Checked first: XLA's own error for other sizes ('shape refinement failed')
      # does not say what the model wants.
      check = tf.debugging.assert_equal(
          tf.shape(lq)[2:4] % m, 0, message=f'lq height and width must be multiples of {m}')
      with tf.control_dependencies([check]):
        return tf_fn(module.params, tf.identity(lq))

    module.enhance = tf.function(
        enhance, autograph=False,
        input_signature=[tf.TensorSpec([None, t, None, None, 3], tf.float32, name='lq')])
    tf.saved_model.save(module, str(tmp / 'saved_model'),
                        signatures={'serving_default': module.enhance})
    loaded = tf.saved_model.load(str(tmp / 'saved_model'))  # keep it: it owns the variables
    rng = np.random.default_rng(0)
    err = 0.0
    for h, w in _CHECK_SIZES:
      window = rng.random((2, t, h * m, w * m, 3), np.float32)
      want = np.asarray(jax.jit(forward)(params, window))
      got = loaded.enhance(tf.constant(window)).numpy()
      err = max(err, float(np.max(np.abs(got - want))))
    sizes = ', '.join(f'{h * m}x{w * m}' for h, w in _CHECK_SIZES)
    if err > 1e-4:
      raise bundle.BundleError(tmp / 'saved_model', f'differs from the JAX model by '
                               f'{err:.2e} (max abs on windows of {sizes})')
    logging.info('SavedModel agrees with JAX: max abs difference %.2e (%s)', err, sizes)
    return {'saved_model': {'path': 'saved_model', 'signature': 'serving_default',
                            'input': 'lq', 'checked_max_abs_diff': err,
                            'input_shape': [None, t, None, None, 3],
                            'size_multiple': m}}

  return write
