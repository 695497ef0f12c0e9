#!/usr/bin/env bash
# Runs berth's tests on a cgroup-v2-only host: the VM of hack/vm/run-v2.sh.
#
#   hack/vm/test-v2.sh [nextest filter args...]
#   hack/vm/test-v2.sh -p berth-cgroups
#   hack/vm/test-v2.sh -p berth-daemon --test pods
#
# The tests are built here, on the host, into a nextest archive (cargo is
# fast here, and a guest under TCG is 10-100 times slower); the guest runs
# them from it with cargo-nextest alone. Must run as root, like hack/test.sh.
# BERTH_VM_* variables (run-v2.sh) size the VM; the default timeout is 3 h.
set -euo pipefail
cd "$(dirname "$0")/../.."
source hack/setup.sh >&2
repo=$PWD
archive=$repo/target/vm/tests.tar.zst

mkdir -p target/vm
cargo nextest archive --workspace --archive-file "$archive" >&2

# The archive is unpacked in the guest's RAM (its /tmp): give it room.
export BERTH_VM_MEM=${BERTH_VM_MEM:-6144} BERTH_VM_TIMEOUT=${BERTH_VM_TIMEOUT:-10800}
exec hack/vm/run-v2.sh cargo-nextest nextest run --archive-file "$archive" --workspace-remap "$repo" \
  --no-fail-fast --failure-output final "$@"
