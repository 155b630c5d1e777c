#!/usr/bin/env bash
# N training processes on this machine, joined by jax.distributed: a multi-host run
# in miniature, to test multi-host code paths (per-host input sharding, cooperative
# orbax checkpoints, metrics from process 0) without a cluster.
#
# Usage:
#   launch/local_multiprocess.sh NUM_PROCESSES [clarity_jax.main flags ...]
#
# e.g.
#   DEVICES_PER_PROCESS=2 launch/local_multiprocess.sh 2 \
#     --config=configs/default.py:runlocal --workdir=runs/local2
#
# Process i runs `python -m clarity_jax.main --verbosity=0 FLAGS...` (INFO logs on:
# they go to the log files) with the standard variables
# JAX_COORDINATOR_ADDRESS=127.0.0.1:PORT JAX_NUM_PROCESSES=N JAX_PROCESS_ID=i, which
# clarity_jax.main passes to jax.distributed.initialize (process 0 hosts the
# coordinator; CPU processes talk through gloo collectives). The config's batch_size
# is global: it must divide by N and by the total number of devices.
#
# Environment:
#   PORT                 coordinator port (default: a free port picked on 127.0.0.1)
#   DEVICES_PER_PROCESS  CPU only: devices each process simulates through
#                        XLA_FLAGS=--xla_force_host_platform_device_count (default: 1)
#   LOG_DIR              where process_<i>.log go (default: a new temporary folder);
#                        process 0's output is also shown here
#   PYTHON               the interpreter (default: python)
#   GRACE_SECONDS        after a process fails, how long the others get to stop on
#                        SIGTERM before SIGKILL (default: 10)
#
# Exit status: 0 when every process succeeded; otherwise the status of the first
# process that failed (the others are then stopped with SIGTERM). SIGINT/SIGTERM to
# this script are passed on to every process (they save a checkpoint and stop).

set -euo pipefail

usage() {
  sed -n '2,/^$/s/^# \{0,1\}//p' "$0" >&2
  exit 2
}

[[ $# -ge 1 && "$1" =~ ^[1-9][0-9]*$ ]] || usage
num_processes="$1"
shift

python_bin="${PYTHON:-python}"
devices="${DEVICES_PER_PROCESS:-1}"
grace="${GRACE_SECONDS:-10}"
log_dir="${LOG_DIR:-$(mktemp -d -t clarity_jax_local.XXXXXX)}"
mkdir -p "${log_dir}"
port="${PORT:-$("${python_bin}" -c 'import socket
s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')}"

if [[ "${devices}" != 1 ]]; then
  export XLA_FLAGS="--xla_force_host_platform_device_count=${devices} ${XLA_FLAGS:-}"
fi

pids=()
interrupted=0
stop_all() {
  for pid in "${pids[@]}"; do
    kill -TERM "${pid}" 2>/dev/null || true
  done
}
trap 'interrupted=1; stop_all' INT TERM

echo "local_multiprocess: ${num_processes} processes x ${devices} device(s)," \
  "coordinator 127.0.0.1:${port}, logs in ${log_dir}" >&2
for ((i = 0; i < num_processes; i++)); do
  cmd=(env JAX_COORDINATOR_ADDRESS="127.0.0.1:${port}" JAX_NUM_PROCESSES="${num_processes}"
       JAX_PROCESS_ID="${i}" "${python_bin}" -m clarity_jax.main --verbosity=0 "$@")
  if ((i == 0)); then
    "${cmd[@]}" > >(tee "${log_dir}/process_0.log") 2>&1 &
  else
    "${cmd[@]}" > "${log_dir}/process_${i}.log" 2>&1 &
  fi
  pids+=("$!")
done

status=0
running=("${pids[@]}")
while ((${#running[@]})); do
  # React to the first process that ends, whichever it is.
  code=0
  wait -n -p finished "${running[@]}" || code=$?
  if [[ -z "${finished:-}" ]]; then
    continue  # a signal interrupted the wait; the trap has passed it on
  fi
  left=()
  for pid in "${running[@]}"; do
    [[ "${pid}" == "${finished}" ]] || left+=("${pid}")
  done
  running=("${left[@]}")
  unset finished
  if ((code != 0 && status == 0)); then
    status="${code}"
    if ((!interrupted)); then
      echo "local_multiprocess: a process failed (exit ${code}); stopping the others." \
        "Logs: ${log_dir}/process_*.log" >&2
      # The others are likely blocked in a collective with the dead one: SIGTERM,
      # then SIGKILL after a grace period.
      stop_all
      (sleep "${grace}"; kill -KILL "${running[@]}") > /dev/null 2>&1 &
      watchdog=$!
    fi
  fi
done
if [[ -n "${watchdog:-}" ]]; then
  kill "${watchdog}" 2>/dev/null || true
fi
wait  # the tee of process 0
exit "${status}"
