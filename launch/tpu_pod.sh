#!/usr/bin/env bash
# Run an experiment on every worker of a Cloud TPU pod slice.
#
# Usage: launch/tpu_pod.sh TPU_NAME ZONE [PROJECT] -- <main.py flags>
#   e.g. launch/tpu_pod.sh my-v4-32 us-central2-b -- \
#          --config experiments/configs/flowpp_cifar10.py --workdir gs://bucket/flowpp
# What it does: copies this checkout to every worker (scp), installs it
# (pip install -e .), then starts experiments/main.py on all workers at once
# with --multihost; on TPU, jax.distributed.initialize() discovers the pod by
# itself.  The workdir should be a GCS path that every worker can reach.
# Preemption: the trainer saves a checkpoint on SIGTERM / JAX's preemption
# notice and exits 143; re-running this script resumes from it.
# Tested here: not on a pod (no TPU access); the script is checked for syntax
# only.  See BUILD_NOTES.md.
set -euo pipefail
if [ $# -lt 3 ]; then sed -n '2,14p' "$0"; exit 2; fi
tpu=$1; zone=$2; shift 2
project_flag=()
if [ "$1" != "--" ]; then project_flag=(--project "$1"); shift; fi
[ "$1" == "--" ] || { echo "expected -- before the main.py flags" >&2; exit 2; }
shift
here=$(cd "$(dirname "$0")/.." && pwd)
args=$(printf '%q ' "$@")
gcloud compute tpus tpu-vm scp --recurse "$here" "$tpu:~/flowzoo" --worker=all --zone "$zone" "${project_flag[@]}"
gcloud compute tpus tpu-vm ssh "$tpu" --worker=all --zone "$zone" "${project_flag[@]}" --command \
  "cd ~/flowzoo && pip install -q -e . 'jax[tpu]' && python experiments/main.py --multihost $args"
