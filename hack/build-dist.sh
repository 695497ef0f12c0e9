#!/usr/bin/env bash
# Builds berth's binaries as they ship, into target/dist: berthd and
# berthctl as `cargo build --release` makes them, and berth-shim with
# berth-runtime (the package's two binaries: the resident shim and what it
# execs per container step) linked statically (glibc and libseccomp inside,
# position-dependent).
#
#   hack/build-dist.sh [--shim-only] [--out DIR]
#
# Why the shim alone is static: a node runs one shim per container, and in
# each of them the dynamic loader, libc, libm, libgcc_s and libseccomp are
# mapped and relocated anew. Linked statically, an idle shim is 4.1 MiB RSS
# and 0.35 MiB PSS instead of 5.4 and 0.46 (30 shims, docs/benchmarks.md),
# and each exec of it (the shim, then the container's init) skips the
# loader. berthd stays dynamic: it resolves registry names through glibc's
# NSS, which a static glibc can only reach by loading the same glibc's NSS
# modules at run time.
#
# Why a script and not .cargo/config.toml: `+crt-static` in rustflags
# without `--target` also reaches proc-macro crates, which cannot be
# linked statically; with `--target` the flags reach only target code, but
# the outputs move to target/<triple>/, so only this build uses it.
set -euo pipefail

shim_only=0 out=""
while [ $# -gt 0 ]; do
  case "$1" in
    --shim-only) shim_only=1 ;;
    # Relative to where the script was called from.
    --out) out=$(realpath -m "${2:?--out needs a directory}"); shift ;;
    *) echo "build-dist: unknown argument $1" >&2; exit 2 ;;
  esac
  shift
done
cd "$(dirname "$0")/.."
# Where cargo puts its output, whichever way it was configured.
target_dir=$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])')
out=${out:-$target_dir/dist}
host=$(rustc -vV | sed -n 's/^host: //p')
case "$host" in
  *-linux-gnu) ;;
  *) echo "build-dist: a static berth-shim is built for glibc hosts; this is $host" >&2; exit 1 ;;
esac

# relocation-model=static: the shim is position-dependent (see
# crates/shim/build.rs); a static-pie link would contradict its -no-pie.
seccomp_a=$(gcc -print-file-name=libseccomp.a)
[ -f "$seccomp_a" ] || { echo "build-dist: libseccomp.a not found (libseccomp-dev)" >&2; exit 1; }
RUSTFLAGS="${RUSTFLAGS:+$RUSTFLAGS }-C target-feature=+crt-static -C relocation-model=static" \
  LIBSECCOMP_LINK_TYPE=static LIBSECCOMP_LIB_PATH=$(dirname "$seccomp_a") \
  cargo build --release -p berth-shim --target "$host"
mkdir -p "$out"
for name in berth-shim berth-runtime; do
  bin=$target_dir/$host/release/$name
  # A static executable has no program interpreter and no dynamic section;
  # a link that went wrong can have one without the other and crash at exec.
  headers=$(readelf -lW "$bin")
  if grep -E 'INTERP|DYNAMIC' <<<"$headers" >&2; then
    echo "build-dist: $bin is not a static executable (above)" >&2
    exit 1
  fi
  "$bin" --version >/dev/null
  install -m 0755 "$bin" "$out/$name"
done
if [ "$shim_only" = 0 ]; then
  cargo build --release -p berth-daemon -p berth-ctl
  install -m 0755 "$target_dir/release/berthd" "$target_dir/release/berthctl" "$out/"
fi
echo "build-dist: $out"
