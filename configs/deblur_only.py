"""Baseline: deblur-only. The same network at scale 1: degraded frame -> sharp frame.

Trained on the full degradation of eq. (1) (blur, noise, compression) without the
downsampling. Two baselines of the paper use it:

  deblur-only + bicubic   the evaluator applies it to the degraded LR input and
                          upsamples its output bicubically to the target scale
                          (`--bundle=DEBLUR_BUNDLE`: a scale-1 bundle on x4 data);
  two-stage deblur -> SR  it, then the SR-only network of configs/sr_only.py, each
                          trained for its own stage (`--bundle=DEBLUR+SR`):

  python -m clarity_jax.main --config=configs/deblur_only.py:runlocal --workdir=runs/deblur
  python -m clarity_jax.main --config=configs/sr_only.py:runlocal --workdir=runs/sr
  python -m clarity_jax.export --workdir=runs/deblur --output=bundles/deblur
  python -m clarity_jax.export --workdir=runs/sr --output=bundles/sr
  python -m clarity_jax.evaluate --bundle=bundles/deblur+bundles/sr,bundles/deblur \\
      --lq=LQ_ROOT --gt=GT_ROOT --output=eval

Blur kernels stay in the pixels of the frame the network sees; at evaluation that
frame is the LR one, where the x4 pipeline's blur is about 4 times narrower, which
is the mismatch every deblur-then-upsample cascade lives with.
"""

from clarity_jax import config as config_lib


def get_config(arg: str | None = None):
  config = config_lib.variant_base(__file__, arg)
  config.scale = 1
  return config
