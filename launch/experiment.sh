#!/usr/bin/env bash
# The experiment of docs/baselines.md in one command: trains the joint model (two seeds)
# and every baseline on the shipped recipe and the same footage, exports them,
# validates each on held-out real videos (three degradation settings), scores their
# line artifacts, and writes docs/baselines.md.
#
# Usage (from anywhere; relative paths are taken from the repository root):
#   launch/experiment.sh --clips=TRAINING_FOOTAGE --heldout=VIDEO1,VIDEO2 \
#       [--steps=2000] [--output=runs/experiment] [--docs=docs/baselines.md]
#
# The default budget (2,000 steps of `small` per window network) took about 20 minutes
# per network on the 2-core VM; validation about 4 minutes per method. Re-running
# reuses what is done (training resumes).
#
# Environment: PYTHON (default: python).
set -euo pipefail
cd "$(dirname "$0")/.."
export TF_CPP_MIN_LOG_LEVEL="${TF_CPP_MIN_LOG_LEVEL:-2}"
exec "${PYTHON:-python}" launch/experiment.py "$@"
