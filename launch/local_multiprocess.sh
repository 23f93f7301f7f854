#!/usr/bin/env bash
# Run one experiment as N JAX processes on this machine (loopback), the way a
# multi-host job runs: each process gets --multihost and its process id, reads
# its own shard of every batch, and only process 0 writes metrics and images.
#
# Usage: launch/local_multiprocess.sh NUM_PROCESSES DEVICES_PER_PROCESS -- <main.py flags>
#   e.g. launch/local_multiprocess.sh 2 2 -- --config experiments/configs/digits_flow.py:smoke \
#          --workdir /tmp/mh_run
# Env: PORT (coordinator port, default 12355), PYTHON (default python).
# Logs: WORKDIR_OF_YOUR_CHOICE is untouched; process i logs to ${LOG_DIR:-/tmp}/flowzoo_proc_i.log
# Exit status: non-zero if any process failed (the others are then stopped).
set -euo pipefail
if [ $# -lt 3 ] || [ "$3" != "--" ]; then
  sed -n '2,12p' "$0"; exit 2
fi
n=$1; devices=$2; shift 3
port=${PORT:-12355}; python=${PYTHON:-python}; log_dir=${LOG_DIR:-/tmp}
here=$(cd "$(dirname "$0")/.." && pwd)
pids=()
for ((i = 0; i < n; i++)); do
  JAX_NUM_CPU_DEVICES=$devices JAX_PLATFORMS=cpu "$python" "$here/experiments/main.py" "$@" \
    --multihost --coordinator_address="127.0.0.1:$port" --num_processes="$n" --process_id="$i" \
    >"$log_dir/flowzoo_proc_$i.log" 2>&1 &
  pids+=($!)
done
status=0
for i in "${!pids[@]}"; do
  if ! wait "${pids[$i]}"; then
    echo "process $i failed; see $log_dir/flowzoo_proc_$i.log" >&2
    status=1
    kill "${pids[@]}" 2>/dev/null || true
  fi
done
exit $status
