#!/usr/bin/env bash
# Training on a Cloud TPU VM pod slice (e.g. v4-32, v5p-64, v5litepod-16): copy this
# checkout to every worker, install it there, then start the same command on all
# workers at once (gcloud compute tpus tpu-vm ssh --worker=all).
#
# Usage:
#   launch/tpu_pod.sh TPU_NAME ZONE [clarity_jax.main flags ...]
#
# e.g.
#   launch/tpu_pod.sh my-v4-32 us-central2-b --workdir=/mnt/shared/runs/base \
#     --config=configs/default.py:variant=base --config.model.dtype=bfloat16 \
#     --config.batch_size=64
#   # resume after a preemption or a stop: the same command again
#
# Each worker runs `python3 -m clarity_jax.main --distributed=on --verbosity=0 FLAGS...`
# (INFO logs on, for the log files): JAX finds
# the other workers itself (jax.distributed.initialize() reads the TPU metadata).
# --workdir must be a folder every worker sees at the same path (Filestore/NFS, or a
# bucket mounted with gcsfuse): orbax writes checkpoints cooperatively from all
# workers, process 0 writes metrics and pictures. config.batch_size is global: it
# must divide by the number of TPU chips.
#
# Environment:
#   PROJECT    gcloud project (default: gcloud's configured one)
#   SRC_DIR    where the code goes on the workers (default: clarity_jax, in $HOME)
#   SKIP_SYNC  1: do not copy and install again (the workers have this version)
#   LOG_FILE   on every worker, also append the output there (default: none)
#   DRY_RUN    1: print the gcloud commands instead of running them
#
# The ssh stays attached while training runs: start it inside tmux/screen. To stop
# training, SIGTERM the processes on every worker (they agree on a step, save a
# checkpoint together and exit), e.g.
#   gcloud compute tpus tpu-vm ssh NAME --zone=ZONE --worker=all \
#     --command='pkill -TERM -f "python3 -m clarity_jax.main"'

set -euo pipefail

usage() {
  sed -n '2,/^$/s/^# \{0,1\}//p' "$0" >&2
  exit 2
}

[[ $# -ge 2 && "$1" != -* && "$2" != -* ]] || usage
tpu_name="$1"
zone="$2"
shift 2

src_dir="${SRC_DIR:-clarity_jax}"
repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
gcloud_args=(--zone="${zone}")
if [[ -n "${PROJECT:-}" ]]; then
  gcloud_args+=(--project="${PROJECT}")
fi

run() {
  if [[ "${DRY_RUN:-0}" == 1 ]]; then
    printf '%q ' "$@"
    echo
  else
    "$@"
  fi
}

on_all_workers() {
  run gcloud compute tpus tpu-vm ssh "${tpu_name}" "${gcloud_args[@]}" --worker=all \
    --command="$1"
}

if [[ "${SKIP_SYNC:-0}" != 1 ]]; then
  # The checkout as it is (tracked and new files, not what .gitignore excludes).
  archive="$(mktemp -t clarity_jax_src.XXXXXX).tar.gz"
  trap 'rm -f "${archive}"' EXIT
  (cd "${repo_root}" && git ls-files -z --cached --others --exclude-standard \
    | tar --null --ignore-failed-read -czf "${archive}" -T -)
  run gcloud compute tpus tpu-vm scp "${archive}" "${tpu_name}:clarity_jax_src.tar.gz" \
    "${gcloud_args[@]}" --worker=all
  # Quoted for the remote shell (%q): a SRC_DIR with spaces or ';' cannot turn
  # the remote `rm -rf` into something else.
  printf -v q_src '%q' "${src_dir}"
  printf -v q_extra '%q' "${src_dir}[tpu]"
  on_all_workers "set -e; rm -rf -- ${q_src}; mkdir -p -- ${q_src}
    tar -xzf clarity_jax_src.tar.gz -C ${q_src}
    python3 -m pip install --quiet --upgrade pip
    python3 -m pip install --quiet -e ${q_extra}"
fi

printf -v flags '%q ' "$@"
printf -v q_src '%q' "${src_dir}"
command="cd ${q_src} && python3 -m clarity_jax.main --distributed=on --verbosity=0 ${flags}"
if [[ -n "${LOG_FILE:-}" ]]; then
  printf -v q_log '%q' "${LOG_FILE}"
  command="set -o pipefail; ${command} 2>&1 | tee -a ${q_log}"
fi
on_all_workers "${command}"
