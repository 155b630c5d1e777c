#!/usr/bin/env bash
# The GPU check in one command (see launch/gpu_check.py for what it measures):
#
#   launch/gpu_check.sh OUT_DIR [--budget_s=510] [--video_dir=DIR] [gpu_check.py flags]
#
# On a machine without internet, wheels of what it lacks (ml-collections, dm-pix,
# av) can travel in WHEELS_DIR (default: .whl in the checkout); they are installed
# into a private folder first, without touching the machine's packages.
set -euo pipefail
if [[ $# -lt 1 ]]; then
  sed -n '2,9p' "$0" >&2
  exit 2
fi
cd "$(dirname "$0")/.."
out="$1"; shift
wheels="${WHEELS_DIR:-.whl}"
if compgen -G "$wheels/*.whl" > /dev/null; then
  "${PYTHON:-python3}" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir \
      --upgrade --target /tmp/clarity_site "$wheels"/*.whl
  export PYTHONPATH="/tmp/clarity_site${PYTHONPATH:+:$PYTHONPATH}"
fi
export PYTHONUNBUFFERED=1 TF_CPP_MIN_LOG_LEVEL=2
exec "${PYTHON:-python3}" launch/gpu_check.py --out="$out" "$@"
