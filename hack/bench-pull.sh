#!/usr/bin/env bash
# Prints cold-pull throughput of a generated image (LAYERS x MB, default
# 10 x 50 MB, incompressible) from a local registry, with 1, 3 and 4
# layers at once, beside the disk's raw sequential write speed.
# Usage: sudo hack/bench-pull.sh [LAYERS=10] [MB_PER_LAYER=50]
set -euo pipefail
cd "$(dirname "$0")/.."
source hack/setup.sh
[ "$(id -u)" -eq 0 ] || { echo "bench: run as root" >&2; exit 1; }
exec cargo bench -p berth-image --bench pull -- "${1:-10}" "${2:-50}"
