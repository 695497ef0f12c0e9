#!/usr/bin/env bash
# The kill -9 storm, long: pods churn through the CRI while berthd is
# SIGKILLed at random moments and random shims are killed too; after each
# restart berthd's lists are checked against what was created and against
# the kernel, and at the end nothing may be left behind. Prints what it did
# (kills, restarts, pods and containers churned) and what it found.
# Usage: sudo hack/kill-storm.sh [SECONDS=600] [SEED]
# The test itself (tests/kill_storm.rs) runs 40 s in the suite.
set -euo pipefail
cd "$(dirname "$0")/.."
source hack/setup.sh
[ "$(id -u)" -eq 0 ] || { echo "kill-storm: run as root (real namespaces, cgroups, mounts)" >&2; exit 1; }
export BERTH_STORM_SECONDS="${1:-600}"
if [ $# -ge 2 ]; then export BERTH_STORM_SEED="$2"; fi
# berthd finds berth-shim beside itself (and berth-shim its berth-runtime).
cargo build -p berth-shim -p berth-daemon
exec cargo test -p berth-daemon --test kill_storm -- --nocapture
