#!/usr/bin/env bash
# Run an experiment on every worker of a Cloud TPU pod slice.
#
# Usage: launch/tpu_pod.sh TPU_NAME ZONE [PROJECT] -- <main.py flags>
#   e.g. launch/tpu_pod.sh my-v4-32 us-central2-b -- \
#          --config experiments/configs/flowpp_cifar10.py --workdir gs://my-bucket/flowpp
# What it does, each run:
#  1. packs this checkout's tracked and untracked-but-not-ignored files (so no .git, .venv
#     or workdirs/) into flowzoo-<version>.tar.gz; the version is the commit plus a hash of
#     the packed files, so an edited checkout gets a new version;
#  2. copies it to every worker and runs launch/worker_setup.sh there: the code unpacks into
#     ~/flowzoo/releases/<version>, ~/flowzoo/current points at it, a Python >= 3.11 venv in
#     ~/flowzoo/venv gets flowzoo[tpu,gcs] installed;
#  3. starts experiments/main.py --multihost from ~/flowzoo/current on all workers at once;
#     on TPU, jax.distributed.initialize() finds the pod by itself.
# The workdir must be reachable from every worker: a gs:// bucket.  Preemption: the trainer
# saves on the TPU's preemption notice and exits 143; rerunning this script resumes.
# Env: FLOWZOO_EXTRAS (default "tpu,gcs").  FLOWZOO_LOCAL_WORKER=DIR: instead of gcloud,
# "deploy" into DIR/flowzoo on this machine and stop (how the tests check steps 1-2).
# Tested: the pack and deploy steps locally (tests/training/test_launch_scripts.py); not on
# a pod here (no TPU access).
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
extras=${FLOWZOO_EXTRAS:-tpu,gcs}

pack() {  # prints the tarball's path
  local out files version tree_hash
  out=$(mktemp -d)
  files="$out/files"
  (cd "$here" && git ls-files -z --cached --others --exclude-standard) |
    while IFS= read -r -d '' f; do
      if [ -e "$here/$f" ]; then printf '%s\0' "$f"; fi
    done >"$files"
  tree_hash=$(cd "$here" && xargs -0 sha256sum <"$files" | sha256sum | cut -c1-12)
  version="$(cd "$here" && git rev-parse --short HEAD)-$tree_hash"
  tar -C "$here" --null -T "$files" -czf "$out/flowzoo-$version.tar.gz"
  echo "$out/flowzoo-$version.tar.gz"
}

if [ -n "${FLOWZOO_LOCAL_WORKER:-}" ]; then
  tarball=$(pack)
  FLOWZOO_HOME="$FLOWZOO_LOCAL_WORKER/flowzoo" bash "$here/launch/worker_setup.sh" "$tarball" \
    "${FLOWZOO_LOCAL_EXTRAS:-}"
  exit 0
fi

if [ $# -lt 3 ]; then sed -n '2,22p' "$0"; exit 2; fi
tpu=$1; zone=$2; shift 2
project_flag=()
if [ "$1" != "--" ]; then project_flag=(--project "$1"); shift; fi
[ "${1:-}" == "--" ] || { echo "expected -- before the main.py flags" >&2; exit 2; }
shift
tarball=$(pack)
remote=/tmp/$(basename "$tarball")
gcloud_tpu=(gcloud compute tpus tpu-vm)
where=(--worker=all --zone "$zone" "${project_flag[@]}")
"${gcloud_tpu[@]}" scp "$tarball" "$here/launch/worker_setup.sh" "$tpu:/tmp/" "${where[@]}"
"${gcloud_tpu[@]}" ssh "$tpu" "${where[@]}" --command \
  "bash /tmp/worker_setup.sh $(printf '%q' "$remote") $(printf '%q' "$extras")"
args=$(printf '%q ' "$@")
"${gcloud_tpu[@]}" ssh "$tpu" "${where[@]}" --command \
  "cd ~/flowzoo/current && PYTHONPATH=\$PWD ~/flowzoo/venv/bin/python experiments/main.py --multihost $args"
