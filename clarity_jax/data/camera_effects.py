"""Real-camera effects of eq. (1): low-light sensor noise and rolling shutter (NumPy reference).

Both are off by default (degradation_config: low_light_prob, rolling_shutter_prob)
and drawn per window by degradations.sample_window_params, like the other stages:

* low light acts on the sensor signal, in place of the first round's noise n: the
  blurred, downsampled frame is linearised (display gamma 2.2), darkened by the
  window's exposure, given signal-dependent Poisson-Gaussian noise (variance
  a S + b in linear units, white at a normal exposure = 1) and row / column
  banding, quantised by the ADC, then gamma-lifted back up: dark but visible,
  noisy in the shadows, posterised where few levels were left;
* rolling shutter acts on the sharp HR frames, before the blur (a capture
  effect): row r of an H-row frame t is read at time t + readout r / H (in frame
  intervals). For real footage, whose motion is unknown, it is approximated
  without optical flow: row r is the linear-in-time blend of frame t and frame
  t + 1 (the last frame of a window extrapolates from t - 1) with weight
  readout r / H. The blend keeps the first moment of every edge where it should
  be (the centroid of an edge's gradient moves by exactly the row's share of the
  motion), but shows displacements beyond a pixel or two as two faint ghosts
  rather than one shifted edge, and knows nothing of a window's reflection at a
  clip edge. The synthetic camera, whose motion is known, renders it exactly
  instead (synthetic.SyntheticSource.render with a readout; params 'method'
  'rendered': the frames already hold it).
"""

from collections.abc import Iterable, Iterator

import numpy as np

# Display gamma: frames are display-referred; the sensor sees their linear light.
DISPLAY_GAMMA = 2.2
SHUTTER_METHODS = ('blend', 'rendered')
# A low-light frame's drifting values, all linear (white at a normal exposure = 1).
LOW_LIGHT_FIELDS = ('exposure', 'shot_gain', 'read_sigma', 'row_sigma', 'col_sigma')


# ----------------------------------------------------------------------- low light


def poisson_gaussian(signal: np.ndarray, shot_gain: float, read_sigma: float,
                     rng: np.random.Generator) -> np.ndarray:
  """a Poisson(S / a) + N(0, sigma^2): mean S, variance a S + sigma^2 (a = shot_gain).

  a is the signal of one photo-electron at the sensor's gain (1 / a electrons at
  white): the higher the gain (ISO), the larger a and the noisier the dark signal.
  """
  s = np.maximum(signal, 0.0).astype(np.float64)
  out = shot_gain * rng.poisson(s / shot_gain) if shot_gain > 0 else s
  if read_sigma > 0:
    out = out + rng.normal(0.0, read_sigma, s.shape)
  return out


def banding(shape: tuple[int, ...], row_sigma: float, col_sigma: float,
            rng: np.random.Generator) -> np.ndarray:
  """[H, W, 1] offsets: one N(0, row_sigma^2) per row plus one N(0, col_sigma^2) per column.

  Shared by R, G and B: row and column readout noise of the sensor, the stripes
  that high gain shows in dark frames.
  """
  h, w = shape[:2]
  rows = rng.normal(0.0, row_sigma, (h, 1, 1)) if row_sigma > 0 else np.zeros((h, 1, 1))
  cols = rng.normal(0.0, col_sigma, (1, w, 1)) if col_sigma > 0 else np.zeros((1, w, 1))
  return rows + cols


def quantise(signal: np.ndarray, bits: int) -> np.ndarray:
  """The ADC: clipped to [0, 1] and rounded to 2^bits - 1 steps (a dark signal keeps few)."""
  levels = float(2**bits - 1)
  return (np.round(np.clip(signal, 0.0, 1.0) * levels) / levels).astype(np.float32)


def gamma_lift(signal: np.ndarray, gamma: float) -> np.ndarray:
  """Linear signal -> display, encoded with gamma 2.2 gamma: gamma > 1 lifts the shadows."""
  return np.power(np.clip(signal, 0.0, 1.0), np.float32(1.0 / (DISPLAY_GAMMA * gamma)))


def low_light(img: np.ndarray, values: dict[str, float], bits: int, gamma: float,
              rng: np.random.Generator) -> np.ndarray:
  """One frame [h, w, 3] in [0, 1] as a high-gain sensor sees it in the dark.

  values: the frame's 'exposure' (share of a normal exposure), 'shot_gain' (a),
  'read_sigma' (sqrt b), 'row_sigma', 'col_sigma' (banding), all linear.
  Draws, in order: shot counts, read noise, row then column offsets (the ones
  whose level is 0 draw nothing).
  """
  linear = np.power(np.clip(img, 0.0, 1.0), np.float32(DISPLAY_GAMMA))
  signal = np.float32(values['exposure']) * linear
  noisy = poisson_gaussian(signal, values['shot_gain'], values['read_sigma'], rng)
  noisy = noisy + banding(img.shape, values['row_sigma'], values['col_sigma'], rng)
  return gamma_lift(quantise(noisy, bits), gamma)


def apply_low_light(x: np.ndarray, light: dict, t: int, rng: np.random.Generator) -> np.ndarray:
  """Frame t of a window under its 'low_light' parameters (sample_window_params')."""
  return low_light(x, light['frames'][t], light['bits'], light['gamma'], rng)


# ------------------------------------------------------------------ rolling shutter


def row_times(height: int, readout: float) -> np.ndarray:
  """[H] float32: when each row is read, in frame intervals after the frame's first row."""
  return np.float32(readout) * np.arange(height, dtype=np.float32) / np.float32(height)


def shutter_frame(frame: np.ndarray, neighbour: np.ndarray, readout: float,
                  next_frame: bool = True) -> np.ndarray:
  """Frame t with row r moved to time t + readout r / H, linearly in time, clipped.

  neighbour: frame t + 1 (x_t + w (x_{t+1} - x_t)) or, at a window's end, frame
  t - 1 (next_frame False: x_t + w (x_t - x_{t-1}), the same line extrapolated).
  """
  w = row_times(frame.shape[0], readout)[:, None, None]
  frame = frame.astype(np.float32)
  step = neighbour - frame if next_frame else frame - neighbour
  return np.clip(frame + w * step, 0.0, 1.0)


def rolling_shutter_frames(frames: Iterable[np.ndarray],
                           shutter: dict | None) -> Iterator[np.ndarray]:
  """The frames of a window as its rolling shutter captured them, one at a time.

  Streams (three frames held at most), so a long clip never has to be in memory;
  no shutter, or 'rendered' (the source already captured it): the frames as they are.
  """
  if shutter is None or shutter['method'] == 'rendered':
    yield from frames
    return
  if shutter['method'] not in SHUTTER_METHODS:
    raise ValueError(f'unknown rolling shutter method {shutter["method"]!r}; expected one '
                     f'of {SHUTTER_METHODS}')
  previous, current = None, None
  for frame in frames:
    if current is not None:
      yield shutter_frame(current, frame, shutter['readout'])
    previous, current = current, frame
  if current is not None:  # the last frame: from its predecessor, or as it is if alone
    yield (current.astype(np.float32) if previous is None else
           shutter_frame(current, previous, shutter['readout'], next_frame=False))


def rolling_shutter(hr: np.ndarray, shutter: dict | None) -> np.ndarray:
  """A whole window [T, H, W, 3] through rolling_shutter_frames."""
  if shutter is None or shutter['method'] == 'rendered':
    return hr
  return np.stack(list(rolling_shutter_frames(hr, shutter)))
