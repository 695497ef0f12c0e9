#!/usr/bin/env bash
# Builds berth's binaries as they ship, into target/dist: berthd and
# berthctl as `cargo build --release` makes them, and the shim package's two
# binaries linked statically and position-dependent: berth-shim, resident
# beside every container, against musl; berth-runtime, exec'd for each step
# that builds or removes a container, against glibc and libseccomp.
#
#   hack/build-dist.sh [--shim-only] [--out DIR]
#
# Why the shim is static: a node runs one shim per container, and in each
# of them the dynamic loader, libc, libm, libgcc_s and libseccomp would be
# mapped and relocated anew; static, each exec skips the loader too. Why
# musl for berth-shim: glibc's static archive brings about 0.5 MiB of code
# (printf, scanf, the static dlopen for NSS, iconv) that every shim maps:
# per idle shim 2.10 MiB RSS against glibc, 1.39 against musl (30 shims,
# docs/benchmarks.md). berth-runtime needs libseccomp, built here for glibc
# only, and runs for milliseconds; berthd stays dynamic: it resolves
# registry names through glibc's NSS. BERTH_SHIM_TARGET names the target
# for berth-shim (hack/setup.sh adds it); when it is not installed the
# shim is linked against glibc, with a warning.
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

shim_target=${BERTH_SHIM_TARGET:-${host%-gnu}-musl}
if ! rustup target list --installed 2>/dev/null | grep -qx "$shim_target"; then
  echo "build-dist: WARNING: Rust target $shim_target is not installed (hack/setup.sh adds it);" >&2
  echo "build-dist: WARNING: berth-shim is linked against glibc, about 0.7 MiB more RSS per shim" >&2
  shim_target=$host
fi

# relocation-model=static: both are position-dependent (see
# crates/shim/build.rs); a static-pie link would contradict its -no-pie.
export RUSTFLAGS="${RUSTFLAGS:+$RUSTFLAGS }-C target-feature=+crt-static -C relocation-model=static"
seccomp_a=$(gcc -print-file-name=libseccomp.a)
[ -f "$seccomp_a" ] || { echo "build-dist: libseccomp.a not found (libseccomp-dev)" >&2; exit 1; }
seccomp_env=(LIBSECCOMP_LINK_TYPE=static "LIBSECCOMP_LIB_PATH=$(dirname "$seccomp_a")")
env "${seccomp_env[@]}" cargo build --release -p berth-shim --bin berth-runtime --target "$host"
# berth-shim links nothing of libseccomp (crates/shim/tests/split.rs), and
# a musl link must not see glibc's library directory: its `-lc` would find
# glibc's. The glibc fallback keeps the settings above (no rebuild between).
[ "$shim_target" = "$host" ] || seccomp_env=()
env "${seccomp_env[@]}" cargo build --release -p berth-shim --bin berth-shim --target "$shim_target"
mkdir -p "$out"
for built in "$shim_target/release/berth-shim" "$host/release/berth-runtime"; do
  bin=$target_dir/$built
  name=$(basename "$bin")
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
  unset RUSTFLAGS
  cargo build --release -p berth-daemon -p berth-ctl
  install -m 0755 "$target_dir/release/berthd" "$target_dir/release/berthctl" "$out/"
fi
echo "build-dist: $out"
