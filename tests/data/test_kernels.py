"""Blur kernels: normalisation and shape against closed forms, OpenCV, SciPy and skimage."""

import json
import math

import cv2
import numpy as np
import pytest
from scipy import stats
from skimage import draw

from clarity_jax.data import degradation_config
from clarity_jax.data import kernels as K


@pytest.fixture(scope='module')
def cfg():
  return degradation_config.get_config()


def _moments(k: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
  """Centre of mass (x, y) relative to the centre pixel, and the 2x2 covariance."""
  r = k.shape[0] // 2
  yy, xx = np.mgrid[-r:r + 1, -r:r + 1].astype(np.float64)
  k = k.astype(np.float64)
  mean = np.array([(k * xx).sum(), (k * yy).sum()])
  dx, dy = xx - mean[0], yy - mean[1]
  cov = np.array([[(k * dx * dx).sum(), (k * dx * dy).sum()],
                  [(k * dx * dy).sum(), (k * dy * dy).sum()]])
  return mean, cov


@pytest.mark.parametrize('kernel_type', K.KERNEL_TYPES)
def test_every_kernel_is_odd_normalised_centred(cfg, kernel_type):
  rng = np.random.default_rng(0)
  for _ in range(25):
    params = K.sample_kernel_params(rng, cfg, kernel_type)
    k = K.make_kernel(params)
    assert k.ndim == 2 and k.shape[0] == k.shape[1] and k.shape[0] % 2 == 1, params
    assert k.dtype == np.float32 and np.all(np.isfinite(k))
    assert abs(float(k.sum(dtype=np.float64)) - 1.0) < 1e-5, params
    if kernel_type == 'sinc':  # negative lobes by design (ringing), the centre dominates
      assert k.min() < 0 and k.argmax() == k.size // 2
    else:
      assert k.min() >= 0.0, params
    mean, _ = _moments(k)
    np.testing.assert_allclose(mean, 0.0, atol=1e-5, err_msg=str(params))
    if K.needs_size(kernel_type):
      assert k.shape[0] == params['size']
      lo, hi = cfg.kernel_size_range
      assert lo <= params['size'] <= hi


def test_sampling_follows_the_config_and_the_seed(cfg):
  a = [K.sample_kernel_params(np.random.default_rng(3), cfg) for _ in range(2)]
  assert a[0] == a[1]
  rng = np.random.default_rng(0)
  kinds = [K.sample_kernel_params(rng, cfg)['type'] for _ in range(4000)]
  freq = np.array([kinds.count(t) for t in cfg.kernel_types]) / len(kinds)
  np.testing.assert_allclose(freq, np.array(cfg.kernel_probs) / sum(cfg.kernel_probs), atol=0.03)
  rng = np.random.default_rng(1)
  for kernel_type in K.KERNEL_TYPES:
    params = K.sample_kernel_params(rng, cfg, kernel_type)
    for name, r in K.kernel_param_ranges(kernel_type, cfg).items():
      assert r.low <= params[name] <= r.high
    # The parameters are the kernel: a JSON round trip rebuilds it bit for bit.
    again = K.make_kernel(json.loads(json.dumps(params)))
    np.testing.assert_array_equal(again, K.make_kernel(params))


def test_isotropic_gaussian_matches_opencv():
  for size, sigma in [(7, 0.8), (13, 2.0), (21, 3.0)]:
    g = cv2.getGaussianKernel(size, sigma, ktype=cv2.CV_64F)
    np.testing.assert_allclose(K.gaussian_kernel(size, sigma), g @ g.T, atol=1e-7)


def test_anisotropic_gaussian_matches_scipy_normal_pdf():
  size, sx, sy, theta = 21, 3.0, 1.2, 0.6
  rot = np.array([[math.cos(theta), -math.sin(theta)], [math.sin(theta), math.cos(theta)]])
  cov = rot @ np.diag([sx**2, sy**2]) @ rot.T
  r = size // 2
  yy, xx = np.mgrid[-r:r + 1, -r:r + 1]
  pdf = stats.multivariate_normal(mean=[0, 0], cov=cov).pdf(np.stack([xx, yy], -1))
  np.testing.assert_allclose(K.gaussian_kernel(size, sx, sy, theta), pdf / pdf.sum(), atol=1e-7)
  # Generalized with beta = 1 is the Gaussian; the plateau follows 1 / (1 + q^beta).
  np.testing.assert_allclose(K.generalized_gaussian_kernel(size, sx, sy, theta, 1.0),
                             pdf / pdf.sum(), atol=1e-7)
  p = K.plateau_kernel(size, sx, sy, theta, 1.5)
  x = np.array([3.0, -2.0])
  q = x @ np.linalg.inv(cov) @ x
  assert p[r - 2, r + 3] / p[r, r] == pytest.approx(1 / (1 + q**1.5), rel=1e-5)


def test_generalized_beta_shapes_the_tails():
  heavy = K.generalized_gaussian_kernel(21, 2.0, 2.0, 0.0, 0.5)
  flat = K.generalized_gaussian_kernel(21, 2.0, 2.0, 0.0, 4.0)
  assert heavy[10, 20] > 100 * flat[10, 20]  # beta < 1: heavy tails
  assert flat[10, 11] / flat[10, 10] > 0.99  # beta > 1: flat top


def test_sinc_is_a_circular_low_pass_at_its_cutoff():
  for cutoff in (1.0, 1.5):
    k = K.sinc_kernel(21, cutoff)
    np.testing.assert_allclose(k, k.T, atol=1e-7)
    np.testing.assert_allclose(k, k[::-1, ::-1], atol=1e-7)
    response = np.abs(np.fft.fft2(k, (256, 256)))
    omega = np.fft.fftfreq(256) * 2 * np.pi
    at = lambda w: response[0, np.argmin(np.abs(omega - w))]
    assert at(0.6 * cutoff) > 0.75 and at(1.4 * cutoff) < 0.12


def test_straight_motion_has_the_closed_form_spread():
  """Uniform motion over L pixels: variance L^2/12 along the path (+1/6 from splatting)."""
  for length, angle in [(21.0, 0.0), (10.5, 0.7), (6.3, -2.0)]:
    k = K.motion_kernel(length, angle)
    mean, cov = _moments(k)
    np.testing.assert_allclose(mean, 0.0, atol=1e-6)
    evals, evecs = np.linalg.eigh(cov)
    assert evals[1] == pytest.approx(length**2 / 12, abs=0.35)
    assert evals[0] < 0.35
    direction = evecs[:, 1]
    assert abs(abs(direction @ [math.cos(angle), math.sin(angle)]) - 1) < 1e-3
  horizontal = K.motion_kernel(21.0, 0.0)
  assert np.count_nonzero(horizontal.sum(axis=1)) == 1  # one row: no vertical smear
  assert _moments(horizontal)[1][0, 0] == pytest.approx(21.0**2 / 12 + 1 / 6, rel=1e-3)


def test_motion_trajectory_is_a_smooth_curve_of_the_given_length():
  straight = K.motion_trajectory(15.0, 0.3, num_samples=2000)
  arc = K.motion_trajectory(15.0, 0.3, curvature=2.0, num_samples=2000)
  wobbly = K.motion_trajectory(15.0, 0.3, curvature=1.0, wobble=0.6, num_samples=2000)
  for path in (straight, arc, wobbly):
    steps = np.linalg.norm(np.diff(path, axis=0), axis=1)
    assert steps.sum() == pytest.approx(15.0, rel=2e-3)  # arc length, constant speed
    np.testing.assert_allclose(path.mean(axis=0), 0.0, atol=1e-9)
  # A constant turn of 2 rad is a circular arc: chord / arc = sin(1) / 1.
  assert np.linalg.norm(arc[-1] - arc[0]) == pytest.approx(15.0 * math.sin(1.0), rel=2e-3)
  assert np.linalg.norm(straight[-1] - straight[0]) == pytest.approx(15.0, rel=2e-3)
  # The wobble makes the heading oscillate: turning right, then left, then right.
  heading = np.unwrap(np.arctan2(*np.diff(wobbly, axis=0).T[::-1]))
  turns = np.sign(np.diff(heading[::50]))
  assert np.count_nonzero(np.diff(turns)) >= 2
  assert np.linalg.eigvalsh(_moments(K.motion_kernel(15.0, 0.3, curvature=2.0))[1])[0] > 1.0


def test_motion_speed_change_weights_the_slow_end():
  k = K.motion_kernel(15.0, 0.0, accel=0.8)  # slow at the start (left), fast at the end
  r = k.shape[0] // 2
  profile = k.sum(axis=0)
  assert np.argmax(profile) < r
  np.testing.assert_allclose(_moments(k)[0], 0.0, atol=1e-6)  # still centred


def test_kernels_vary_continuously_with_fractional_parameters():
  """Sub-pixel rasterisation: mass moves in proportion to a 0.01-0.05 px change, no snapping."""
  def l1(a, b):
    size = max(a.shape[0], b.shape[0])
    pad = lambda k: np.pad(k, (size - k.shape[0]) // 2)
    return float(np.abs(pad(a) - pad(b)).sum())
  families = [lambda d: K.motion_kernel(9.0 + d, 0.4),
              lambda d: K.motion_kernel(9.0, 0.4 + d),
              lambda d: K.motion_kernel(9.0, 0.4, curvature=1.0 + d),
              lambda d: K.defocus_kernel(2.3 + d)]
  for make in families:
    small, large = l1(make(0.0), make(0.01)), l1(make(0.0), make(0.05))
    assert 0.0 < small < 0.05
    assert 3.0 < large / small < 7.0  # about linear in the change


def test_defocus_matches_a_finely_rasterised_disk():
  for radius in (1.7, 3.0, 4.6):
    k = K.defocus_kernel(radius)
    n, fine = k.shape[0], 64
    disk = np.zeros((n * fine, n * fine))
    centre = n * fine / 2  # the centre of the centre pixel in the fine grid
    rr, cc = draw.disk((centre - 0.5, centre - 0.5), radius * fine, shape=disk.shape)
    disk[rr, cc] = 1.0
    ref = disk.reshape(n, fine, n, fine).mean(axis=(1, 3))
    ref /= ref.sum()
    np.testing.assert_allclose(k, ref, atol=0.02 * ref.max())
    np.testing.assert_allclose(k, k.T, atol=1e-7)
    assert _moments(k)[1][0, 0] == pytest.approx(radius**2 / 4 + 1 / 12, rel=0.08)


def test_bad_kernel_arguments_raise():
  with pytest.raises(ValueError, match='odd'):
    K.gaussian_kernel(8, 1.0)
  with pytest.raises(ValueError, match='unknown kernel type'):
    K.make_kernel({'type': 'box', 'size': 3})
  with pytest.raises(ValueError, match='needs a kernel of size'):
    K.motion_kernel(15.0, 0.0, size=7)
  with pytest.raises(ValueError, match='accel'):
    K.motion_kernel(5.0, 0.0, accel=1.0)


@pytest.mark.parametrize('kernel_type', ['gaussian_iso', 'gaussian_aniso', 'generalized',
                                         'plateau'])
def test_untruncated_kernels_keep_their_tails_inside(kernel_type):
  """truncate_kernels=False: no near-box blurs (a Gaussian cut at +-1 sigma), whose
  inverse draws lines along the pixel axes; the same draws otherwise, sizes capped."""
  cfg = degradation_config.get_config()
  border = {}
  for truncate in (True, False):
    cfg.truncate_kernels = truncate
    rng = np.random.default_rng(0)
    draws = [K.sample_kernel_params(rng, cfg, kernel_type) for _ in range(300)]
    kernels = [K.make_kernel(p) for p in draws]
    border[truncate] = np.array([k[0].sum() + k[-1].sum() + k[1:-1, 0].sum() + k[1:-1, -1].sum()
                                 for k in kernels])
    assert all(k.shape[0] <= 21 for k in kernels)
    if truncate:
      first = draws
    else:  # same random numbers: only the sizes differ
      assert [{k: v for k, v in p.items() if k != 'size'} for p in draws] == [
          {k: v for k, v in p.items() if k != 'size'} for p in first]
      assert all(p['size'] >= q['size'] for p, q in zip(draws, first))
  assert border[False].mean() < 0.5 * border[True].mean()
  if kernel_type.startswith('gaussian'):  # plateau tails are heavy at any size
    assert (border[True] > 0.05).mean() > 0.1 and np.quantile(border[False], 0.95) < 0.01


def test_window_kernels_are_untruncated_too():
  """The training windows draw their blur through degradations.sample_window_params:
  truncate_kernels=False must reach them (one size per window, its widest frame's)."""
  from clarity_jax.data import degradations  # pylint: disable=g-import-not-at-top
  cfg = degradation_config.get_config()
  cfg.blur_prob, cfg.kernel_types, cfg.kernel_probs = 1.0, ('gaussian_iso',), (1.0,)
  sizes = {}
  for truncate in (True, False):
    cfg.truncate_kernels = truncate
    params = [degradations.sample_window_params(np.random.default_rng(i), cfg, 5, 4)['blur']
              for i in range(200)]
    sizes[truncate] = [p['size'] for p in params]
    if not truncate:
      for p in params:
        sigma = max(f['sigma_x'] for f in p['frames'])
        assert p['size'] >= min(2 * math.ceil(3 * sigma) + 1, 21)
  assert sizes[False] != sizes[True] and all(a >= b for a, b in zip(sizes[False], sizes[True]))
