#!/usr/bin/env bash
# Installs everything berth needs to build, test and run on Debian 12.
# Idempotent: installs only what is missing.
set -euo pipefail

packages=(
  build-essential pkg-config   # cc and linker for crates with C parts
  libseccomp-dev               # seccomp filters (libseccomp crate)
  protobuf-compiler            # protoc, for the CRI bindings (k8s-cri)
  busybox-static               # the test and benchmark container images
  iproute2                     # ip netns, for tests and debugging
  docker-registry umoci skopeo # a local registry and the tools that build test images
  apache2-utils                # htpasswd, for the registry-auth tests
  containernetworking-plugins  # CNI plugins (bridge, host-local, loopback, portmap) in /usr/lib/cni
  iptables                     # used by the bridge and portmap CNI plugins
  openssl                      # a certificate for the streaming-over-TLS test
  qemu-system-x86 cpio         # the cgroup-v2-only test VM (hack/vm) and its initramfs
  xz-utils kmod                # its kernel (unpacked from Debian's), depmod; modprobe inside it
)

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

if ! command -v cargo >/dev/null 2>&1; then
  for d in "$HOME/.cargo/bin" /root/.cargo/bin /usr/local/cargo/bin; do
    [ -x "$d/cargo" ] && export PATH="$d:$PATH" && break
  done
fi
command -v cargo >/dev/null 2>&1 || {
  echo "setup: no Rust toolchain found (cargo). Install one with rustup, then rerun." >&2
  exit 1
}
