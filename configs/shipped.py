"""The recipe of the model shipped in the package (clarity_jax/weights/), chosen on
the validation protocol (python -m clarity_jax.validate) by the runs of
docs/results.md; how it was trained: docs/model_card.md.

  python -m clarity_jax.main --config=configs/shipped.py --workdir=runs/shipped \\
      --config.data.path=CLIPS_AND_FOLDERS --config.data.val_path=HELD_OUT_VIDEOS

Only the deltas from configs/default.py:runlocal (2 CPU cores) are set here.
`--config.init_from=clarity_jax/weights/claritynet_small_x4` continues from the
shipped weights (a fine-tune on one camera's footage, or a longer run).
"""

from clarity_jax import config as config_lib


def get_config(arg: str | None = None):
  config = config_lib.sibling_config(__file__, ','.join(filter(None, ['runlocal', arg])))
  # Real footage of any kind (videos and frame folders), averaged 2x2 when cached:
  # targets at native H.264 resolution carry macroblock edges that the model learns
  # to draw (thin horizontal and vertical lines, docs/results.md).
  config.data.source = 'footage'
  config.data.downscale = 2
  config.batch_size = 8
  # Camera footage, not web images: noise on half the windows and at most 10/255
  # (Real-ESRGAN's 30/255 on 80% taught the model to smooth real detail away);
  # Gaussian-family kernels never cut into near-box blurs. Blur, JPEG and H.264
  # keep the default ranges (narrower "camera" ranges validated worse, run R6).
  d = config.degradation
  d.noise_prob = 0.5
  d.gaussian_sigma255_range = (1.0, 10.0)
  d.poisson_scale_range = (0.05, 1.0)
  d.truncate_kernels = False
  # Optimisation: a few thousand steps of 8 windows; EMA weights are exported.
  config.learning_rate = 1e-3
  config.warmup_steps = 100
  config.num_train_steps = 4000
  config.ema_decay = 0.999
  config.log_every_steps = 50
  config.eval_every_steps = 500
  config.checkpoint_every_steps = 250
  config.keep_checkpoints = 20
  return config
