"""Default ClarityNetSR training configuration (joint deblur + SR x4, K = 2).

Select variants with a config argument, comma separated, e.g.

  python -m clarity_jax.main --config=configs/default.py:runlocal --workdir=/tmp/cj
  python -m clarity_jax.main --config=configs/default.py:variant=base --workdir=...

and override any field with `--config.FIELD=VALUE`.
  runlocal        shrink everything so a 2-core laptop trains in a few minutes.
  variant=NAME    model size: tiny | small | base (see clarity_jax/models/claritynet.py).
"""

import ml_collections

from clarity_jax.data import degradation_config


def _parse_arg(arg: str | None) -> dict[str, str]:
  """'runlocal,variant=base' -> {'runlocal': '', 'variant': 'base'}."""
  out = {}
  for item in (arg or '').split(','):
    if item:
      key, _, value = item.partition('=')
      out[key.strip()] = value.strip()
  return out


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  args = _parse_arg(arg)
  config = ml_collections.ConfigDict()

  # The task: output scale s in {1, 2, 4} (1 = deblur only) and the temporal
  # half-window K (2K + 1 frames; K = 0 is the single-frame model).
  config.scale = 4
  config.num_neighbors = 2
  config.seed = 0

  # Data: where sharp clips come from and how windows are cut from them.
  config.data = ml_collections.ConfigDict()
  # 'synthetic': skimage.data photographs animated by a synthetic camera (embedded,
  # offline); 'footage': real clips, any mix of video files, folders of videos and
  # frame folders (ROOT/<clip>/*.png|jpg, or one clip folder), comma separated in
  # data.path; 'tfds': a tensorflow-datasets builder (see clarity_jax/data/tfds_builder.py).
  config.data.source = 'synthetic'
  config.data.path = ''  # footage: videos and folders, comma separated; tfds: data_dir
  # footage: area-downscale every frame by this factor when it is cached
  # (2: 1280x720 H.264 frames become cleaner, sharper 640x360 targets).
  config.data.downscale = 1
  # Real clips only: the share of training windows drawn from the embedded photographs
  # instead (texture no video codec has quantised).
  config.data.photo_share = 0.0
  # Real clips only: the share of training windows turned by a uniform random angle
  # (codec texture in the targets then has no preferred axis).
  config.data.turn_share = 0.0
  config.data.tfds_name = 'clarity_frame_folders'
  # Held-out clips (footage, comma separated; tfds: data_dir); empty: held-out
  # synthetic photographs.
  config.data.val_path = ''
  # footage (training and val_path): where decoded frames are cached as uint8 .npy
  # (reused across runs), never beside the footage; empty: ~/.cache/clarity_jax/video
  # ($XDG_CACHE_HOME), per user.
  config.data.cache_dir = ''
  config.data.crop_size = 64  # LQ crop (HR crop = scale * crop_size)
  config.data.frames_per_clip = 30  # synthetic clips: frames rendered per photograph
  config.data.augment = True  # flips, 90-degree rotations, temporal reversal
  # Input loader: 'tf' (tf.data), 'threads' (a thread pool, no TensorFlow needed) or
  # 'auto' (tf.data where TensorFlow imports, else threads); both serve the same batches.
  config.data.loader = 'auto'
  config.data.num_parallel_calls = -1  # workers; -1: tf.data.AUTOTUNE / one per core
  config.data.prefetch = 2
  # Eq. (1), the degradation model: clarity_jax/data/degradation_config.py, in the
  # package so that `clarity_jax.degrade` has it without the repository.
  config.degradation = degradation_config.get_config()

  # Model (eqs. 3-6). Variants: tiny (CPU tests), small, base.
  config.model = ml_collections.ConfigDict()
  config.model.variant = args.get('variant', 'small')
  config.model.use_alignment = True  # ablation: False skips flow + warp
  config.model.use_attention = True  # ablation: False fuses by plain averaging
  # W warps the encoder's features, not the frames: each frame's features are then the
  # same in every window, so restoring a video encodes each frame once (a fifth of
  # small's work at K=2). False: the frames are warped before the encoder (bundles
  # trained before 2026-12-07); the same weights restore as well either way.
  config.model.warp_features = True
  config.model.dtype = 'float32'  # computation dtype; 'bfloat16' on accelerators
  # The uncertainty head: the model also predicts, per output pixel, the Laplace
  # scale b of its error (enhance --uncertainty maps it). Trained by the NLL
  # |x - x_hat| / b + log b with x_hat held fixed, so the restoration is the same
  # with or without it.
  config.model.uncertainty = False

  # Objective (eq. 7).
  config.loss = ml_collections.ConfigDict()
  config.loss.charbonnier_weight = 1.0
  config.loss.charbonnier_eps = 1e-3
  config.loss.perceptual_weight = 0.05
  # VGG19 ImageNet weights: a Keras .h5 (e.g. vgg19_weights_tf_dim_ordering_tf_kernels_notop.h5)
  # or a torchvision state dict converted to .safetensors. Empty: perceptual term off.
  config.loss.vgg_weights = ''
  config.loss.perceptual_layers = ('block2_conv2', 'block3_conv4', 'block4_conv4')
  config.loss.edge_weight = 0.05
  # Temporal loss: the pipeline then also yields the window one frame later
  # (lq_next, hr_next) and the step restores both (twice the compute).
  config.loss.temporal_weight = 0.0

  # Train only the uncertainty head, the restorer's weights frozen as loaded: adds
  # the head to a trained model (init_from a bundle without it), in minutes.
  config.freeze_restorer = False

  # Warm start: a bundle folder or a training workdir whose weights a fresh run starts
  # from (fresh optimiser, schedule from step 0), e.g. fine-tuning the shipped model
  # on one camera's footage. Resuming a workdir ignores it.
  config.init_from = ''

  # Optimisation: AdamW, warmup then cosine decay, gradient clipping, EMA.
  config.batch_size = 16  # global, over every device of every host
  config.num_train_steps = 300_000
  config.learning_rate = 1e-4
  config.warmup_steps = 2_000
  config.end_learning_rate_factor = 0.01
  config.weight_decay = 1e-4
  config.grad_clip_norm = 1.0
  config.ema_decay = 0.999  # 0 disables the EMA copy

  # Parallelism: the global batch is split over every device of every host. With
  # mesh.space > 1, groups of that many devices (on one host) also split each
  # training crop by rows, for crops too large for one device (clarity_jax/sharding.py);
  # crop_size and the batch per group must then divide evenly.
  config.mesh = ml_collections.ConfigDict()
  config.mesh.space = 1

  # Logging, evaluation and checkpoints.
  config.log_every_steps = 100
  config.eval_every_steps = 5_000
  config.num_eval_batches = 8
  config.num_sample_images = 4
  config.checkpoint_every_steps = 2_000
  config.keep_checkpoints = 3

  if 'runlocal' in args:
    # Sized for 2 CPU cores, ending clearly above bicubic (the tiny variant trains
    # faster per step but gains less in the same time: docs/results.md).
    config.model.variant = args.get('variant', 'small')
    config.data.crop_size = 32
    config.data.frames_per_clip = 12
    config.batch_size = 4
    config.num_train_steps = 400
    config.warmup_steps = 20
    config.learning_rate = 1e-3
    config.ema_decay = 0.0
    config.log_every_steps = 20
    config.eval_every_steps = 200
    config.num_eval_batches = 4
    config.checkpoint_every_steps = 100
  return config
