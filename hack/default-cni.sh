#!/usr/bin/env bash
# Gives a node with no pod network one that works out of the box: when
# /etc/cni/net.d holds no CNI config at all, writes a bridge network
# (berth0, 10.88.0.0/16, masqueraded like containerd's default) as
# 99-berth-default.conflist. berthd uses the first config in lexical order,
# so any cluster network plugin's own config (10-calico.conflist, ...) takes
# precedence. Remove it with: sudo rm /etc/cni/net.d/99-berth-default.conflist
set -euo pipefail
conf_dir=${1:-/etc/cni/net.d}
name=99-berth-default.conflist
existing=$(find "$conf_dir" -maxdepth 1 -type f \( -name '*.conflist' -o -name '*.conf' -o -name '*.json' \) 2>/dev/null | head -n 1 || true)
if [ -n "$existing" ]; then
  exit 0
fi
mkdir -p "$conf_dir"
cat >"$conf_dir/$name.tmp" <<'JSON'
{
  "cniVersion": "1.0.0",
  "name": "berth-default",
  "plugins": [
    {"type": "bridge", "bridge": "berth0", "isGateway": true, "ipMasq": true, "hairpinMode": true,
     "ipam": {"type": "host-local", "ranges": [[{"subnet": "10.88.0.0/16"}]], "routes": [{"dst": "0.0.0.0/0"}]}},
    {"type": "portmap", "capabilities": {"portMappings": true}}
  ]
}
JSON
mv "$conf_dir/$name.tmp" "$conf_dir/$name"
echo "default-cni: no CNI config in $conf_dir, so installed $conf_dir/$name"
echo "default-cni: (bridge berth0, 10.88.0.0/16; a cluster network plugin's config takes precedence; remove it with: rm $conf_dir/$name)"
