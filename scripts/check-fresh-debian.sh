#!/usr/bin/env bash
# Checks the README's promise on a minimal Debian 12: makes (or reuses) a debootstrap
# minbase chroot at DIR, copies this checkout's committed tree in, and runs
# scripts/demo.sh and scripts/test.sh there as a newcomer would. Needs root and Debian's debootstrap.
# usage: scripts/check-fresh-debian.sh DIR [demo|test|both]
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
dir="$(realpath -m "${1:?usage: check-fresh-debian.sh DIR [demo|test|both]}")"
what="${2:-both}"

[ -x "$dir/bin/bash" ] || debootstrap --variant=minbase bookworm "$dir"
cp /etc/resolv.conf "$dir/etc/resolv.conf"
# An installed Debian has /etc/hosts (the installer writes it; containers get one); a
# debootstrap tree does not, and without it "localhost" goes to DNS.
[ -f "$dir/etc/hosts" ] || printf '127.0.0.1\tlocalhost\n::1\t\tlocalhost ip6-localhost ip6-loopback\n' > "$dir/etc/hosts"
rm -rf "$dir/root/calib" "$dir/root/shared"
mkdir -p "$dir/root/calib"
# What is committed, as a clone would have it.
git -C "$root" archive HEAD | tar -C "$dir/root/calib" -xf -
[ -d "$root/../shared" ] && cp -r "$root/../shared" "$dir/root/shared"

for m in proc sys dev; do mountpoint -q "$dir/$m" || mount --bind "/$m" "$dir/$m"; done
trap 'for m in dev sys proc; do umount -l "$dir/$m" 2>/dev/null || true; done' EXIT

run() { chroot "$dir" /usr/bin/env -i HOME=/root PATH=/usr/sbin:/usr/bin:/sbin:/bin \
          bash -c "cd /root/calib && $1"; }
case "$what" in
  demo) run scripts/demo.sh ;;
  test) run scripts/test.sh ;;
  both) run scripts/demo.sh && run scripts/test.sh ;;
esac
