#!/usr/bin/env bash
# The experiment of docs/baselines.md in one command: builds the held-out set (validation
# photographs as clips, plus the first frames of the videos in --video_dir when given,
# degraded with clarity_jax.degrade --seed=0), trains the joint model and every
# baseline under the same budget and data, exports the bundles, evaluates them all in
# one run, and writes docs/baselines.md with its pictures under docs/baselines/.
#
# Usage (from anywhere; relative paths are taken from the repository root):
#   launch/experiment.sh [--steps=N] [--variant=small] [--batch_size=4] \
#       [--crop_size=32] [--frames=7] [--hr_size=192] \
#       [--video_dir=DIR] [--max_videos=5] [--video_size=320,180] \
#       [--output=runs/experiment] [--docs=docs/baselines.md]
#
# --video_dir: a folder of videos (.mp4, .mkv, ...) whose first --frames frames,
# area-downscaled to --video_size, join the held-out set as real clips; default none.
# For example --video_dir=../shared/data/video, where a checkout has that folder beside it.
#
# The default budget (configs/default.py:runlocal: small variant, 400 steps of batch 4
# per network; 7 networks) took about 18 minutes on 2 CPU cores. Re-running reuses
# what is done (training resumes).
#
# Environment: PYTHON (default: python).
set -euo pipefail
cd "$(dirname "$0")/.."
export TF_CPP_MIN_LOG_LEVEL="${TF_CPP_MIN_LOG_LEVEL:-2}"
exec "${PYTHON:-python}" launch/experiment.py "$@"
