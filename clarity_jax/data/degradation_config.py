"""The default degradation model: what training and `clarity_jax.degrade` apply.

It lives in the package, not in configs/, because the package runs without the
repository (a plain `pip install .` ships no configs/): configs/default.py takes
its `config.degradation` from here, and so does the degrade command.
"""

import ml_collections


def get_config() -> ml_collections.ConfigDict:
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
  # True (Real-ESRGAN): Gaussian-family kernels take the size drawn from
  # kernel_size_range even when it cuts them at +-1 sigma, into near box blurs.
  # False: the size grows to +-3 sigma (up to the range's top).
  d.truncate_kernels = True
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
  # lost texture of low-bitrate streams. Its CPU cost per window: docs/performance.md.
  # `clarity_jax.degrade` (evaluation sets)
  # uses the same CRF range with the codec on every clip (--codec).
  d.jpeg_prob = 0.8
  d.jpeg_quality_range = (30, 95)
  d.video_codec_prob = 0.4
  d.video_codec = 'libx264'
  d.video_crf_range = (18, 38)  # inclusive, uniform over integers
  # Optional second round of blur / resize / noise / JPEG (Real-ESRGAN).
  d.second_round_prob = 0.0
  # Real-camera effects (data/camera_effects.py), off by default; both run on the
  # host and the device. Low light replaces the first round's noise n: the frame,
  # linearised (gamma 2.2), is darkened to `exposure` of a normal exposure, gets
  # Poisson-Gaussian sensor noise of variance a S + b (S linear, white = 1;
  # a = shot_gain, b = read_sigma^2), row and column banding (N(0, sigma^2) offsets
  # per row / column, shared by R, G, B), is quantised to `bits` and gamma-lifted
  # back up, y = q^(1 / (2.2 gamma)): dark but visible (mid-grey 0.5 comes out at
  # 0.08-0.38 over these ranges). Bits and gamma hold for a window, the rest drifts.
  d.low_light_prob = 0.0
  d.low_light_exposure_range = (0.02, 0.15)
  d.low_light_shot_gain_range = (5e-5, 1e-3)  # a: 1000 to 20000 electrons at white
  d.low_light_read_sigma_range = (2e-4, 2e-3)  # sqrt(b), linear
  d.low_light_row_sigma_range = (0.0, 1e-3)  # row banding, linear
  d.low_light_col_sigma_range = (0.0, 5e-4)  # column banding, linear
  d.low_light_bits_range = (8, 12)  # ADC bits, inclusive, uniform over integers
  d.low_light_gamma_range = (1.0, 1.6)  # tone-curve lift of the shadows (1: plain 2.2)
  # Rolling shutter, on the sharp HR frames: row r of H read at t + readout r / H
  # (readout: a share of the frame interval, one per window). Real footage: a blend
  # of frame t and t + 1 per row (camera_effects.py says how and its limits).
  d.rolling_shutter_prob = 0.0
  d.rolling_shutter_readout_range = (0.2, 0.9)
  # Temporal coherence: maximum frame-to-frame drift, as a share of each range.
  d.drift = 0.1
  # Where eq. (1) runs: 'host' (NumPy/OpenCV in the input pipeline, the reference)
  # or 'device' (data/on_device/degradations.py in a jitted stage just before the train
  # step, train/feed.py: the host draws these parameters and the synthetic camera's
  # shots, which the device renders, or reads, crops and augments real clips;
  # windows drawn for the video codec come back to the host for x264 alone);
  # 'auto': 'device' on GPUs and TPUs, 'host' on CPUs (docs/performance.md).
  d.where = 'auto'
  return d
