#!/usr/bin/env bash
# Runs CMD as root in a cgroup-v2-only VM and exits with CMD's status.
#
#   hack/vm/run-v2.sh CMD [ARGS...]
#
# The VM (qemu, TCG: no KVM needed) boots Debian's kernel; its root is this
# host's / exported read-only over 9p under a tmpfs overlay, so every path
# (the repo, target/, /usr/lib/cni, busybox...) is where it is here, and
# nothing the guest writes reaches the host. The guest is a node-like v2
# host: cgroup2 alone on /sys/fs/cgroup, lo up, no outside network
# (hack/vm/init has the details). CMD runs in the current directory,
# stdin /dev/null, its stdout and stderr streamed to ours.
#
# Exit status: CMD's; 124 when the VM ran out of time; 125 when it ended
# without CMD's status (failed boot, kernel panic), with the console's tail.
#
# Environment:
#   BERTH_VM_MEM      guest RAM in MiB (default 4096; the guest's writes live in it)
#   BERTH_VM_CPUS     guest CPUs (default: the host's)
#   BERTH_VM_TIMEOUT  seconds before the VM is killed (default 3600)
#   BERTH_VM_CONSOLE  1: show the guest's kernel console on stderr as it runs
#   BERTH_VM_APPEND   more kernel arguments (e.g. loglevel=7 to see the boot)
#   BERTH_VM_CACHE    kernel and initramfs cache (default /var/cache/berth-vm)
#   BERTH_VM_ACCEL    kvm, where KVM works (untested: on the machine this was
#                     written on, nested KVM hangs the guest); default tcg
# CMD sees PATH, TERM, LANG, LC_*, TZ, RUST_*, CARGO_TERM_*, NEXTEST_* and
# BERTH_* (not BERTH_VM_*) from here; HOME is /root.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
if [ $# -eq 0 ]; then
  echo "usage: $0 CMD [ARGS...]" >&2
  exit 2
fi
if [ "$(id -u)" -ne 0 ]; then
  echo "run-v2: run as root (the VM exports the whole host root; the cache is in /var/cache)" >&2
  exit 2
fi
source "$here/../setup.sh" >&2   # qemu, cpio, kmod...: installs what is missing
read -r kdir initrd < <("$here/build.sh")
kver=$(basename "$kdir")
case "$kdir" in *[[:space:]]*)
  echo "run-v2: $kdir has a space: the kernel command line cannot carry it" >&2
  exit 2 ;;
esac

# Our children (qemu under timeout, two cats) until they are reaped; on any
# exit, end those still running, and remove the job dir.
pids=()
cleanup() {
  [ ${#pids[@]} -eq 0 ] || kill "${pids[@]}" 2>/dev/null || true
  rm -rf "$job"
}
job=$(mktemp -d /tmp/berth-vm-job.XXXXXX)
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
trap 'exit 129' HUP
# The job is a shell script the guest's init runs: cd, then CMD under a
# clean environment. Every word single-quoted, so nothing is expanded twice.
q() { printf "'%s' " "${1//\'/\'\\\'\'}"; }
{
  echo "cd $(q "$PWD") || { echo $(q "run-v2: $PWD is not in the VM (it shows the host's / but its own /tmp, /run, /var/lib/berth, /var/log)") >&2; exit 125; }"
  printf 'exec env -i '
  while IFS= read -r -d '' var; do
    q "$var"
  done < <(env -0 | grep -zE '^(PATH|TERM|LANG|LC_[A-Z]+|TZ|RUST_[A-Z_]+|CARGO_TERM_[A-Z_]+|NEXTEST_[A-Z_]+|BERTH_[A-Z_]+)=' | grep -zv '^BERTH_VM_')
  q HOME=/root; q USER=root; q LOGNAME=root
  for arg in "$@"; do q "$arg"; done
  echo
} >"$job/cmd"

# CMD's stdout and stderr come out of qemu into two fifos, copied to ours by
# cat. (qemu could reopen /proc/self/fd/1 itself, but its writes would not
# move our file offset, and whatever we or our caller write next to the
# same file would overwrite them.)
mkfifo "$job/stdout" "$job/stderr"
cat "$job/stdout" &
pids+=($!)
cat "$job/stderr" >&2 &
pids+=($!)
console="path=$job/console.log"
[ "${BERTH_VM_CONSOLE:-}" = 1 ] && console="path=/proc/self/fd/2,append=on"

qemu=(
  qemu-system-x86_64 -accel "${BERTH_VM_ACCEL:-tcg}" -cpu max -smp "${BERTH_VM_CPUS:-$(nproc)}" -m "${BERTH_VM_MEM:-4096}"
  -nodefaults -no-user-config -display none -no-reboot
  -kernel "$kdir/vmlinux" -initrd "$initrd"
  # no_timer_check: on a busy host, TCG can be too slow for the kernel's
  # early IO-APIC timer check, which then panics ("timer doesn't work").
  -append "console=ttyS0 quiet panic=-1 no_timer_check berth.modules=$kdir/lib/modules/$kver ${BERTH_VM_APPEND:-}"
  -chardev "file,id=console,$console" -serial chardev:console
  # The host's root, read-only: qemu itself refuses writes.
  -fsdev local,id=root,path=/,security_model=none,readonly=on,multidevs=remap
  -device virtio-9p-pci,fsdev=root,mount_tag=hostroot
  # The job dir: CMD and its environment in, exit status out.
  -fsdev "local,id=job,path=$job,security_model=none"
  -device virtio-9p-pci,fsdev=job,mount_tag=berthjob
  -device virtio-serial-pci
  -chardev "file,id=out,path=$job/stdout" -device virtserialport,chardev=out,name=berth.stdout
  -chardev "file,id=err,path=$job/stderr" -device virtserialport,chardev=err,name=berth.stderr
  -device virtio-rng-pci
)
start=$(date +%s.%N)
# In the background, so that our traps run at once on a signal (bash runs
# them only between commands). --foreground: qemu stays in our process
# group, so a ^C reaches it too.
timeout --foreground -k 10 "${BERTH_VM_TIMEOUT:-3600}" "${qemu[@]}" </dev/null &
vm=$!
pids+=("$vm")
rc=0
wait "$vm" || rc=$?
# qemu is gone. Had it died before opening a fifo, its cat would still wait
# for a writer: be one for an instant (read-write opens never block).
exec 3<>"$job/stdout" 3>&- 4<>"$job/stderr" 4>&-
wait "${pids[@]}" || true
pids=()
wall=$(awk -v a="$start" -v b="$(date +%s.%N)" 'BEGIN {printf "%.1f", b - a}')

fail() {
  echo "run-v2: $*" >&2
  if [ -s "$job/console.log" ]; then
    echo "run-v2: last lines of the guest's console:" >&2
    tail -n 30 "$job/console.log" | sed 's/^/  | /' >&2
  fi
}
if [ "$rc" -eq 124 ]; then
  fail "timed out after ${BERTH_VM_TIMEOUT:-3600}s (BERTH_VM_TIMEOUT)"
  exit 124
fi
if [ ! -s "$job/status" ]; then
  why=$(grep -a -m1 -E 'Kernel panic|berth-vm: failed' "$job/console.log" 2>/dev/null | tr -d '\r' || true)
  fail "the VM ended without the command's exit status (qemu exit $rc): ${why:-failed boot or kernel panic}"
  exit 125
fi
status=$(cat "$job/status")
awk -v s="$status" -v b="$(cat "$job/booted")" -v e="$(cat "$job/ended")" -v w="$wall" \
  'BEGIN {printf "run-v2: exit %s; guest ready after %.1fs, command ran %.1fs; %ss wall\n", s, b, e - b, w}' >&2
exit "$status"
