"""Adds the uncertainty head to the shipped model: only the head trains, the
restorer's weights stay exactly as shipped, so its restorations do not change.

  python -m clarity_jax.main --config=configs/uncertainty_head.py --workdir=runs/head \\
      --config.data.path=CLIPS_AND_FOLDERS --config.data.val_path=HELD_OUT_VIDEOS

The head learns the error the restorer makes on the shipped recipe's degradations
(configs/shipped.py); a forward pass and the head's small backward pass per step,
so it costs a fraction of the restorer's training. Point init_from at another
bundle or workdir to add a head to your own model.
"""

from clarity_jax import config as config_lib
from clarity_jax.inference import shipped


def get_config(arg: str | None = None):
  config = config_lib.sibling_config(__file__, arg, name='shipped.py')
  config.init_from = str(shipped.FOLDER)
  config.model.uncertainty = True
  config.freeze_restorer = True
  # The head is small and starts from a constant: a short schedule at a high rate.
  config.learning_rate = 2e-3
  config.warmup_steps = 50
  config.num_train_steps = 1500
  config.ema_decay = 0.99
  config.eval_every_steps = 500
  config.checkpoint_every_steps = 250
  config.keep_checkpoints = 3
  return config
