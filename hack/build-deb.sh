#!/usr/bin/env bash
# Builds berth's Debian package: berthd, berth-shim, berth-runtime (which
# berth-shim runs from its own directory) and berthctl in /usr/bin,
# /lib/systemd/system/berthd.service (deploy/systemd) and a commented
# default /etc/berth/config.toml (deploy/config, a conffile).
#
#   hack/build-deb.sh [--bin-dir DIR] [--out DIR] [--version V] [--compression xz|gzip|none]
#
# Without --bin-dir it runs hack/build-dist.sh and packages target/dist
# (release binaries, berth-shim linked statically). The tests package the suite's own debug build instead
# (--bin-dir target/debug), which is why this stages a tree and runs
# `dpkg-deb --build` rather than using cargo-deb: the package is four
# files plus control data, dpkg-deb ships with dpkg on every Debian host,
# and it packages whatever binaries it is given without a cargo build or
# a tool to install first.
set -euo pipefail
cd "$(dirname "$0")/.."

bin_dir="" out=target/deb compression=xz
version=$(sed -n '/^\[workspace.package\]/,/^\[/s/^version *= *"\(.*\)"/\1/p' Cargo.toml)
while [ $# -gt 0 ]; do
  case "$1" in
    --bin-dir) bin_dir=$2; shift ;;
    --out) out=$2; shift ;;
    --version) version=$2; shift ;;
    --compression) compression=$2; shift ;;
    *) echo "build-deb: unknown argument $1" >&2; exit 2 ;;
  esac
  shift
done
if [ -z "$bin_dir" ]; then
  hack/build-dist.sh
  bin_dir=${CARGO_TARGET_DIR:-target}/dist
fi
arch=$(dpkg --print-architecture)
stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT

install -d "$stage/DEBIAN" "$stage/usr/bin" "$stage/lib/systemd/system" "$stage/etc/berth" "$stage/usr/share/doc/berth"
for b in berthd berth-shim berth-runtime berthctl; do
  [ -x "$bin_dir/$b" ] || { echo "build-deb: no $bin_dir/$b" >&2; exit 1; }
  install -m 0755 "$bin_dir/$b" "$stage/usr/bin/$b"
done
install -m 0644 deploy/systemd/berthd.service "$stage/lib/systemd/system/berthd.service"
install -m 0644 deploy/config/config.toml "$stage/etc/berth/config.toml"
install -m 0644 README.md "$stage/usr/share/doc/berth/README.md"
# Manuals and completions come from the binaries' own CLI definitions.
install -d "$stage/usr/share/man/man8" "$stage/usr/share/man/man1" "$stage/usr/share/bash-completion/completions" \
  "$stage/usr/share/zsh/vendor-completions" "$stage/usr/share/fish/vendor_completions.d"
"$bin_dir/berthd" --man | gzip -9n > "$stage/usr/share/man/man8/berthd.8.gz"
"$bin_dir/berthctl" man | gzip -9n > "$stage/usr/share/man/man1/berthctl.1.gz"
"$bin_dir/berthctl" completion bash > "$stage/usr/share/bash-completion/completions/berthctl"
"$bin_dir/berthctl" completion zsh > "$stage/usr/share/zsh/vendor-completions/_berthctl"
"$bin_dir/berthctl" completion fish > "$stage/usr/share/fish/vendor_completions.d/berthctl.fish"
printf 'berth\nLicense: Apache-2.0\n' > "$stage/usr/share/doc/berth/copyright"
for s in postinst prerm postrm; do
  install -m 0755 "deploy/debian/$s" "$stage/DEBIAN/$s"
done
echo /etc/berth/config.toml > "$stage/DEBIAN/conffiles"
size=$(du -sk --exclude=DEBIAN "$stage" | cut -f1)
cat > "$stage/DEBIAN/control" <<CONTROL
Package: berth
Version: $version
Architecture: $arch
Maintainer: berth developers <berth@localhost>
Installed-Size: $size
Depends: libc6 (>= 2.36), libseccomp2
Recommends: containernetworking-plugins, iptables
Section: admin
Priority: optional
Description: Kubernetes container runtime (CRI v1)
 berthd serves the kubelet's CRI v1 API on unix:///run/berth/berth.sock;
 each container is supervised by its own berth-shim, which keeps it
 running across restarts and upgrades of berthd. berthctl is the
 operator's command line.
CONTROL
mkdir -p "$out"
deb="$out/berth_${version}_${arch}.deb"
dpkg-deb --root-owner-group "-Z$compression" --build "$stage" "$deb" >/dev/null
echo "$deb"
