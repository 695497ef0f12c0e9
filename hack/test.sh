#!/usr/bin/env bash
# Sets up the machine and runs the whole test suite: unit tests and the
# privileged end-to-end tests (real namespaces, cgroups and mounts).
# Must run as root. Extra arguments go to the test runner (a filter, say).
set -euo pipefail
cd "$(dirname "$0")/.."
source hack/setup.sh

if [ "$(id -u)" -ne 0 ]; then
  echo "test: the end-to-end tests create namespaces, cgroups and mounts: run as root" >&2
  exit 1
fi

# Build every test binary once; the runner then runs tests of all crates in
# parallel, each test in its own process.
if cargo nextest --version >/dev/null 2>&1; then
  exec cargo nextest run --workspace --no-fail-fast --failure-output final "$@"
else
  exec cargo test --workspace --no-fail-fast "$@"
fi
