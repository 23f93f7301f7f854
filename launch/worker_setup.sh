#!/usr/bin/env bash
# Install one release of flowzoo on a worker (run there by launch/tpu_pod.sh; also usable by
# hand on any machine). Idempotent: rerunning with a new tarball switches to the new code.
#
# Usage: worker_setup.sh RELEASE_TARBALL [PIP_EXTRAS]
#   RELEASE_TARBALL  flowzoo-<version>.tar.gz made by tpu_pod.sh (the checkout's tracked and
#                    untracked-but-not-ignored files: no .git, .venv or workdirs)
#   PIP_EXTRAS       extras to install, e.g. "tpu,gcs" (default: none)
# Layout under $FLOWZOO_HOME (default ~/flowzoo):
#   releases/<version>/   the unpacked code, one folder per version, never overwritten
#   current -> releases/<version>   what launches run (switched atomically)
#   venv/                 a virtual environment with Python >= 3.11 (made once)
# Env: PYTHON (interpreter for the venv; default: the newest of python3.13..python3.11,
#      python3), FLOWZOO_SKIP_PIP=1 (skip the pip install: tests, pre-built images).
set -euo pipefail
if [ $# -lt 1 ]; then sed -n '2,16p' "$0"; exit 2; fi
tarball=$1; extras=${2:-}
home=${FLOWZOO_HOME:-$HOME/flowzoo}
name=$(basename "$tarball" .tar.gz)
version=${name#flowzoo-}
release="$home/releases/$version"

if [ ! -d "$release" ]; then
  mkdir -p "$home/releases"
  tmp=$(mktemp -d "$home/releases/.unpack.XXXXXX")
  tar -xzf "$tarball" -C "$tmp"
  chmod 755 "$tmp"
  mv "$tmp" "$release"
fi
ln -sfn "releases/$version" "$home/current.new"
mv -T "$home/current.new" "$home/current"

if [ ! -x "$home/venv/bin/python" ]; then
  python=""
  for candidate in ${PYTHON:-python3.13 python3.12 python3.11 python3}; do
    if "$candidate" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
      python=$candidate
      break
    fi
  done
  if [ -z "$python" ]; then
    echo "worker_setup.sh: flowzoo needs Python >= 3.11 and found none (tried:" \
         "${PYTHON:-python3.13 python3.12 python3.11 python3}). Install python3.11" \
         "(e.g. apt-get install python3.11-venv) or set PYTHON=/path/to/python3.11." >&2
    exit 1
  fi
  "$python" -m venv "$home/venv"
fi

if [ "${FLOWZOO_SKIP_PIP:-0}" != 1 ]; then
  target="$release"
  if [ -n "$extras" ]; then target="${release}[${extras}]"; fi
  "$home/venv/bin/python" -m pip install -q --upgrade "$target"
fi
echo "worker_setup.sh: $(hostname) runs flowzoo $version from $release"
