"""Baseline: SR-only. The same network, trained on clean bicubic downsampling.

Trained without blur, noise or compression (the classic bicubic SR setting), then
applied to the degraded evaluation input: it measures what the joint model gains
by learning the real-world degradations of eq. (1) rather than plain SR.

  python -m clarity_jax.main --config=configs/sr_only.py:runlocal --workdir=runs/sr_only

It is also the second stage of the two-stage deblur -> SR baseline: give the
evaluator `--bundle=DEBLUR_BUNDLE+SR_BUNDLE` (bundles of configs/deblur_only.py and
of this config, each trained for its own stage; see configs/deblur_only.py).
"""

from clarity_jax import config as config_lib


def get_config(arg: str | None = None):
  config = config_lib.variant_base(__file__, arg)
  d = config.degradation
  d.blur_prob = 0.0
  d.noise_prob = 0.0
  d.jpeg_prob = 0.0
  d.video_codec_prob = 0.0
  d.second_round_prob = 0.0
  d.resize_modes = ('bicubic',)
  d.resize_probs = (1.0,)
  return config
