#!/usr/bin/env bash
# Prints pod-ready latency (50 pods in sequence, 50 with 4 at a time),
# ExecSync and streamed-exec (WebSocket) latency and the memory of the runtime with the pods running, for
# berthd and, when installed, containerd 1.6 + runc, with their ratios.
# Usage: sudo hack/bench-pods.sh [PODS=50] [--cgroup-driver systemd | --handler | --userns | --density]
# With --density (PODS defaults to 110, the kubelet's maxPods) it fills a node:
# each step's share of one pod's start (CNI included), time to all ready,
# pod-ready p50/p99, relist p99, daemon threads and memory, against containerd.
# With --userns it prints pod-ready latency of pods with a user namespace
# against pods without, alternating on one berthd.
# With --handler it instead compares containerd 1.6 running the pods with
# berth-shim (handler mode, containerd-shim-berth-v2) and with runc's shim.
# With --cgroup-driver systemd it instead prints pod-ready latency under the
# cgroupfs and the systemd driver, berthd running as a systemd service in a
# systemd-nspawn machine (this host runs no systemd of its own).
set -euo pipefail
cd "$(dirname "$0")/.."
source hack/setup.sh
[ "$(id -u)" -eq 0 ] || { echo "bench: run as root" >&2; exit 1; }
# berthd from the bench build, beside it the shim as it ships (statically
# linked; hack/build-dist.sh).
hack/build-dist.sh --shim-only
sync
# Absolute: cargo runs a bench in its package directory.
BERTH_SHIM_BIN=$(realpath -e "${CARGO_TARGET_DIR:-target}/dist/berth-shim")
export BERTH_SHIM_BIN
status=0
cargo bench -p berth-daemon --bench pods -- "${@:-50}" || status=$?
# The runtimes' bridges and pod cgroups (the bench removed every pod).
for br in bb201 bb202 bb203 bb204 bb205; do ip link del "$br" 2>/dev/null || true; done
for c in /sys/fs/cgroup/*/berth-bench /sys/fs/cgroup/*/berth-bench-containerd /sys/fs/cgroup/*/berth-bench-containerd-berth; do
  [ -d "$c" ] && find "$c" -depth -type d -exec rmdir {} \; 2>/dev/null || true
done
exit $status
