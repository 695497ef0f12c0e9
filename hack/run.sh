#!/usr/bin/env bash
# Sets up the machine, builds berth, and runs berthd in the foreground with
# its built-in defaults (CRI socket unix:///run/berth/berth.sock).
# Extra arguments go to berthd (e.g. --log-level debug). Must run as root.
set -euo pipefail
cd "$(dirname "$0")/.."
source hack/setup.sh

if [ "$(id -u)" -ne 0 ]; then
  echo "run: berthd manages namespaces, cgroups and mounts: run as root" >&2
  exit 1
fi
hack/default-cni.sh   # a pod network, if the node has none
# As berth ships: berthd with the statically linked berth-shim beside it.
hack/build-dist.sh
exec "${CARGO_TARGET_DIR:-target}/dist/berthd" "$@"
