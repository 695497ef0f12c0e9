#!/usr/bin/env bash
# Sets up the machine and runs the whole test suite: unit tests and the
# privileged end-to-end tests (real namespaces, cgroups and mounts).
# Must run as root. Extra arguments go to the test runner (a filter, say).
set -euo pipefail
cd "$(dirname "$0")/.."
# What the cgroup-v2-only VM runs again (below): the cgroup code, the
# shim's limits, stats, OOM and cleanup, a pod's placement and limits; and
# AppArmor, which the VM's Debian kernel has and this host's kernel has not.
# (Not user namespaces: the VM's writable filesystems are tmpfs, which its
# 6.1 kernel cannot idmap, so berth rightly offers none there.)
V2_VM_TESTS='package(berth-cgroups) | (package(berth-shim) & binary(resources)) | (package(berth-shim) & binary(lifecycle)) | (package(berth-daemon) & (binary(cgroup_placement) | binary(apparmor)))'
source hack/setup.sh

if [ "$(id -u)" -ne 0 ]; then
  echo "test: the end-to-end tests create namespaces, cgroups and mounts: run as root" >&2
  exit 1
fi

# Build every test binary once; the runner then runs tests of all crates in
# parallel, each test in its own process.
if ! cargo nextest --version >/dev/null 2>&1; then
  exec cargo test --workspace --no-fail-fast "$@"
fi
status=0
cargo nextest run --workspace --no-fail-fast --failure-output final "$@" || status=$?

# The shim that ships is linked statically (hack/build-dist.sh: berth-shim
# against musl, berth-runtime against glibc): the shim's own tests, and the
# pod, restart, streaming, systemd-driver and containerd-handler tests of a
# whole berthd, run again on it. Only for the
# whole suite, as the VM run below.
STATIC_SHIM_TESTS='package(berth-shim) | (package(berth-daemon) & (binary(pods) | binary(pods_restart) | binary(streaming) | binary(systemd_driver) | binary(containerd_handler)))'
if [ $# -eq 0 ] && [ "${BERTH_SKIP_STATIC_SHIM:-0}" != 1 ]; then
  echo "test: the shim's tests again, on the statically linked berth-shim (hack/build-dist.sh)"
  # Under the target dir, not /tmp: /tmp may be mounted noexec.
  dist="$(realpath -m "${CARGO_TARGET_DIR:-target}")/dist-test"
  if hack/build-dist.sh --shim-only --out "$dist"; then
    BERTH_SHIM_BIN="$dist/berth-shim" cargo nextest run --no-fail-fast --failure-output final -E "$STATIC_SHIM_TESTS" || status=$?
  else
    status=1
  fi
fi

# This host's cgroups are hybrid; most nodes are cgroup-v2-only. The tests
# of the cgroup code paths run again, on the binaries just built, in a
# v2-only VM (hack/vm; about 20-40x slower under TCG, hence a subset). Only
# for the whole suite: a filtered run is someone looking at one thing.
if [ $# -eq 0 ] && [ "${BERTH_SKIP_V2_VM:-0}" != 1 ]; then
  echo "test: the cgroup tests again, on a cgroup-v2-only host (hack/vm/test-v2.sh)"
  hack/vm/test-v2.sh -E "$V2_VM_TESTS" || status=$?
fi
exit $status
