#!/usr/bin/env bash
# Runs berth's tests on a cgroup-v2-only host: the VM of hack/vm/run-v2.sh.
#
#   hack/vm/test-v2.sh [nextest args...]
#   hack/vm/test-v2.sh -p berth-cgroups
#   hack/vm/test-v2.sh -p berth-daemon --test pods
#   hack/vm/test-v2.sh -E 'package(berth-shim) & test(/oom/)'
#
# The tests are built here, on the host (a guest under TCG is 10-100 times
# slower), and run in the guest by cargo-nextest from the build's metadata
# (nextest's "reusing builds"): the guest reads the test binaries where they
# are, in this repo's target/, through its view of the host's /. (A nextest
# archive would have to be unpacked in the guest first: 3.2 GB into its RAM,
# which ran out after 7 minutes of TCG.) Do not rebuild while it runs: the
# guest caches what it has read of target/.
#
# A reused build takes no cargo selection flags: -p NAME and --test NAME are
# turned into the filterset nextest wants (-E 'package(NAME) & binary(NAME)').
# Must run as root, like hack/test.sh. BERTH_VM_* (see run-v2.sh) size the
# VM; the default timeout here is 3 hours.
set -euo pipefail
cd "$(dirname "$0")/../.."
source hack/setup.sh >&2
repo=$PWD
meta=$repo/target/vm
mkdir -p "$meta"

packages=() binaries=() args=()
while [ $# -gt 0 ]; do
  case "$1" in
    -p | --package) packages+=("package($2)"); shift 2 ;;
    --test) binaries+=("binary($2)"); shift 2 ;;
    *) args+=("$1"); shift ;;
  esac
done
join() { local IFS='|'; echo "$*"; }
filter=
[ ${#packages[@]} -eq 0 ] || filter="($(join "${packages[@]}"))"
[ ${#binaries[@]} -eq 0 ] || filter="${filter:+$filter & }($(join "${binaries[@]}"))"
[ -z "$filter" ] || args=(-E "$filter" "${args[@]}")

# Builds every test binary, then describes them (and the workspace) for the
# guest's nextest.
cargo nextest list --workspace --list-type binaries-only --message-format json >"$meta/binaries-metadata.json"
cargo metadata --format-version 1 --all-features >"$meta/cargo-metadata.json"

export BERTH_VM_TIMEOUT=${BERTH_VM_TIMEOUT:-10800}
exec hack/vm/run-v2.sh cargo-nextest nextest run \
  --binaries-metadata "$meta/binaries-metadata.json" --cargo-metadata "$meta/cargo-metadata.json" \
  --workspace-remap "$repo" --no-fail-fast --failure-output final "${args[@]}"
