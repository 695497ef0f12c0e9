#!/usr/bin/env bash
# Prints berth-shim latency per lifecycle step and idle shim memory.
# Usage: sudo hack/bench-shim.sh [ITERATIONS=100] [IDLE_SHIMS=30]
set -euo pipefail
cd "$(dirname "$0")/.."
source hack/setup.sh
[ "$(id -u)" -eq 0 ] || { echo "bench: run as root" >&2; exit 1; }
# The shim as it ships (statically linked; hack/build-dist.sh). A freshly
# linked binary's pages are dirty in the page cache and would be counted
# as private memory; flush them first.
hack/build-dist.sh --shim-only
sync
# Absolute: cargo runs a bench in its package directory.
BERTH_SHIM_BIN=$(realpath -e "${CARGO_TARGET_DIR:-target}/dist/berth-shim")
export BERTH_SHIM_BIN
exec cargo bench -p berth-shim --bench shim_lifecycle -- "${1:-100}" "${2:-30}"
