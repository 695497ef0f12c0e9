#!/usr/bin/env bash
# Builds (once) what the cgroup-v2 test VM boots: Debian's kernel and
# modules, and a small initramfs. Prints the cache directory it used.
#
# Nothing here is committed: the kernel is Debian's linux-image package,
# fetched with apt into the cache (BERTH_VM_CACHE, /var/cache/berth-vm).
#
#   <cache>/kernel/<kver>/vmlinux                uncompressed, booted through PVH
#   <cache>/kernel/<kver>/lib/modules/<kver>/    the guest's /lib/modules/<kver>
#   <cache>/kernel/current -> <kver>             the one the VM boots
#   <cache>/initramfs-<kver>-<hash>.cpio.gz      keyed by hack/vm/init's content
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
cache=${BERTH_VM_CACHE:-/var/cache/berth-vm}
mkdir -p "$cache/kernel"
# One build at a time; a second VM starting meanwhile waits, then finds it.
exec 9>"$cache/.lock"
flock 9

log() { echo "build-vm: $*" >&2; }
trap 'log "failed: line $LINENO: $BASH_COMMAND"' ERR

# The kernel: the package linux-image-amd64 points at today. Named exactly,
# because `apt-get download linux-image-*` would fetch every version.
if [ ! -e "$cache/kernel/current/vmlinux" ]; then
  pkg=$(apt-cache depends linux-image-amd64 2>/dev/null | awk '/Depends: linux-image-[0-9]/ {print $2; exit}')
  if [ -z "$pkg" ]; then
    apt-get update -qq
    pkg=$(apt-cache depends linux-image-amd64 | awk '/Depends: linux-image-[0-9]/ {print $2; exit}')
  fi
  [ -n "$pkg" ] || { log "apt knows no linux-image-amd64"; exit 1; }
  kver=${pkg#linux-image-}
  log "fetching $pkg"
  tmp=$(mktemp -d "$cache/kernel/.new-XXXXXX")
  trap 'rm -rf "$tmp"' EXIT
  chown _apt "$tmp" 2>/dev/null || true   # apt downloads as _apt when it can
  (cd "$tmp" && apt-get download -qq "$pkg")
  dpkg -x "$tmp"/*.deb "$tmp/x"
  mkdir -p "$tmp/$kver/lib/modules"
  # qemu boots an uncompressed ELF kernel directly (PVH entry, Debian has
  # CONFIG_PVH): no BIOS and no xz decompressor, which take a minute under
  # TCG. The bzImage holds it as one xz stream.
  off=$(LC_ALL=C grep -aboP -m1 '\xfd7zXZ\x00' "$tmp/x/boot/vmlinuz-$kver" | head -1 | cut -d: -f1)
  # (Not a pipe: xz stops reading at the stream's end, and tail's SIGPIPE
  # would fail the pipeline.)
  xz -dc --single-stream <(tail -c +$((off + 1)) "$tmp/x/boot/vmlinuz-$kver") >"$tmp/$kver/vmlinux"
  mv "$tmp/x/boot/config-$kver" "$tmp/$kver/config"
  mv "$tmp/x/lib/modules/$kver" "$tmp/$kver/lib/modules/"
  # The package leaves modules.dep to its postinst: make it here, so the
  # guest's modprobe (and ours, below) can resolve dependencies.
  depmod -b "$tmp/$kver" "$kver"
  rm -rf "$cache/kernel/$kver"
  mv "$tmp/$kver" "$cache/kernel/$kver"
  ln -sfn "$kver" "$cache/kernel/current"
  rm -rf "$tmp"
  trap - EXIT
fi
kdir=$(readlink -f "$cache/kernel/current")
kver=$(basename "$kdir")

# The initramfs only has to reach the real root: busybox, hack/vm/init and
# the modules for virtio, 9p and overlayfs (all =m in Debian's kernel).
modules=(virtio_pci virtio_console virtio_rng 9pnet_virtio 9p overlay)
hash=$( (cat "$here/init"; echo "${modules[*]}"; sha256sum /usr/bin/busybox) | sha256sum | cut -c1-12)
initrd="$cache/initramfs-$kver-$hash.cpio.gz"
if [ ! -e "$initrd" ]; then
  log "building $(basename "$initrd")"
  tmp=$(mktemp -d)
  trap 'rm -rf "$tmp"' EXIT
  mkdir -p "$tmp"/{bin,dev,proc,sys,lower,rw,newroot}
  cp /usr/bin/busybox "$tmp/bin/busybox"   # busybox-static: no libraries to copy
  cp "$here/init" "$tmp/init"
  chmod 755 "$tmp/init"
  # Each module's dependencies first, in modprobe's order, each once.
  for m in "${modules[@]}"; do
    modprobe -S "$kver" -d "$kdir" --show-depends "$m"
  done | awk '$1 == "insmod" && !seen[$2]++ {print $2}' | while read -r ko; do
    cp "$ko" "$tmp/$(basename "$ko")"
    basename "$ko" >>"$tmp/modules"
  done
  (cd "$tmp" && find . | cpio -o -H newc --quiet | gzip -1) >"$initrd.tmp"
  mv "$initrd.tmp" "$initrd"
  # Older ones are of no use (qemu reads its initramfs whole when it starts).
  find "$cache" -maxdepth 1 -name 'initramfs-*.cpio.gz' ! -path "$initrd" -delete
  rm -rf "$tmp"
  trap - EXIT
fi

echo "$kdir $initrd"
