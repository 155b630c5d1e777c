"""Default ClarityNetSR training configuration (joint deblur + SR x4, K = 2).

Select variants with a config argument, comma separated, e.g.

  python -m clarity_jax.main --config=configs/default.py:runlocal --workdir=/tmp/cj
  python -m clarity_jax.main --config=configs/default.py:variant=base --workdir=...

and override any field with `--config.FIELD=VALUE`.
  runlocal        shrink everything so a 2-core laptop trains in a few minutes.
  variant=NAME    model size: tiny | small | base (see clarity_jax/models/claritynet.py).
"""

import ml_collections


def _parse_arg(arg: str | None) -> dict[str, str]:
  """'runlocal,variant=base' -> {'runlocal': '', 'variant': 'base'}."""
  out = {}
  for item in (arg or '').split(','):
    if item:
      key, _, value = item.partition('=')
      out[key.strip()] = value.strip()
  return out


def degradation_config() -> ml_collections.ConfigDict:
  """Eq. (1) y = C((x * k) downsampled by s + n), Real-ESRGAN-style ranges.

  Ranges are (low, high), sampled once per window; within a window each parameter
  drifts smoothly from frame to frame by at most `drift` of its range, so the five
  frames of a window look as if one shaking camera took them.
  """
  d = ml_collections.ConfigDict()
  # Blur kernel k (in HR pixels). Types and their sampling probabilities.
  d.blur_prob = 0.9
  d.kernel_size_range = (7, 21)  # odd sizes only
  d.kernel_types = ('motion', 'defocus', 'gaussian_iso', 'gaussian_aniso',
                    'generalized', 'plateau', 'sinc')
  d.kernel_probs = (0.35, 0.15, 0.15, 0.15, 0.1, 0.05, 0.05)
  d.gaussian_sigma_range = (0.2, 3.0)
  d.motion_length_range = (3.0, 21.0)  # trajectory length, HR pixels
  d.defocus_radius_range = (1.0, 5.0)
  d.generalized_beta_range = (0.5, 4.0)
  d.plateau_beta_range = (1.0, 2.0)
  d.sinc_cutoff_range = (1.0, 3.1)  # omega_c in radians, as Real-ESRGAN (pi/3..pi)
  # Downsampling by config.scale, the interpolation picked at random per window.
  d.resize_modes = ('bicubic', 'area', 'bilinear')
  d.resize_probs = (0.5, 0.25, 0.25)
  # Noise n: Gaussian (sigma in [0, 255] units) or Poisson; gray (luma only) noise
  # some of the time.
  d.noise_prob = 0.8
  d.gaussian_sigma255_range = (1.0, 30.0)
  d.poisson_prob = 0.3  # share of noisy windows using Poisson instead of Gaussian
  d.poisson_scale_range = (0.05, 3.0)
  d.gray_noise_prob = 0.4
  # Compression C: JPEG per frame at a random quality, then (as RealBasicVSR: JPEG,
  # then a video codec) H.264 over the whole window, at one CRF per window, for a
  # share of the windows: real footage (CCTV, drones, dashcams, streams) is
  # codec-compressed. CRF 18 is near transparent, 28-38 the blocking, smearing and
  # lost texture of low-bitrate streams. The codec costs 4-5 CPU-ms per 5 x 64 x 64
  # window it runs on (about 2 ms on average at 0.4, next to ~37 ms for the rest of
  # the window: docs/performance.md). `clarity_jax.degrade` (evaluation sets)
  # uses the same CRF range with the codec on every clip (--codec).
  d.jpeg_prob = 0.8
  d.jpeg_quality_range = (30, 95)
  d.video_codec_prob = 0.4
  d.video_codec = 'libx264'
  d.video_crf_range = (18, 38)  # inclusive, uniform over integers
  # Optional second round of blur / resize / noise / JPEG (Real-ESRGAN).
  d.second_round_prob = 0.0
  # Temporal coherence: maximum frame-to-frame drift, as a share of each range.
  d.drift = 0.1
  return d


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
  # offline); 'frame_folders': ROOT/<clip>/*.png|jpg; 'video': a folder of video
  # files; 'tfds': a tensorflow-datasets builder (see clarity_jax/data/tfds_builder.py).
  config.data.source = 'synthetic'
  config.data.path = ''  # root folder for frame_folders / video; tfds data_dir
  config.data.tfds_name = 'clarity_frame_folders'
  config.data.val_path = ''  # held-out clips; empty: held-out synthetic photographs
  # video source: where decoded frames are cached as uint8 .npy (reused across runs);
  # empty: <system temp>/clarity_jax_video_cache.
  config.data.cache_dir = ''
  config.data.crop_size = 64  # LQ crop (HR crop = scale * crop_size)
  config.data.frames_per_clip = 30  # synthetic clips: frames rendered per photograph
  config.data.augment = True  # flips, 90-degree rotations, temporal reversal
  config.data.num_parallel_calls = -1  # tf.data.AUTOTUNE
  config.data.prefetch = 2
  config.degradation = degradation_config()

  # Model (eqs. 3-6). Variants: tiny (CPU tests), small, base.
  config.model = ml_collections.ConfigDict()
  config.model.variant = args.get('variant', 'small')
  config.model.use_alignment = True  # ablation: False skips flow + warp
  config.model.use_attention = True  # ablation: False fuses by plain averaging
  config.model.dtype = 'float32'  # computation dtype; 'bfloat16' on accelerators

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
  # training crop by rows, for crops too large for one device (clarity_jax/spatial.py);
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
    # A few minutes on 2 CPU cores, ending clearly above bicubic (the tiny variant
    # trains 5x faster per step but gains only ~0.1 dB in the same time).
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
