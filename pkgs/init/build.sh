#!/usr/bin/env bash
# Fills $ROOTFS for $TARGETARCH: hull-init at /init (and /sbin/init), hullctl,
# the mount points the PID1 uses, and a minimal /etc.
set -euo pipefail
bin=$(../../ci/build-init "${TARGETARCH:?}")
cd "$ROOTFS"
mkdir -p sbin bin usr/bin etc proc sys dev run tmp root var/log var/lib containers
chmod 1777 tmp
chmod 0700 root
install -m 0755 "$bin" init
ln -s /init sbin/init
# hullctl is the same binary, told apart by its name.
ln -s /init usr/bin/hullctl
cat > etc/passwd <<'T'
root:x:0:0:root:/root:/bin/sh
nobody:x:65534:65534:nobody:/nonexistent:/bin/false
T
cat > etc/group <<'T'
root:x:0:
nogroup:x:65534:
T
cat > etc/hosts <<'T'
127.0.0.1	localhost
::1	localhost ip6-localhost ip6-loopback
T
# DHCP clients write /run/resolv.conf; the read-only image points there.
ln -s /run/resolv.conf etc/resolv.conf
cat > etc/os-release <<'T'
NAME="Hull"
ID=hull
PRETTY_NAME="Hull"
HOME_URL="https://example.invalid/hull"
T
