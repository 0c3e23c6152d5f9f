#!/usr/bin/env bash
# Fills $ROOTFS for $TARGETARCH: dropbear (host keys made at first start, -R)
# with its libraries, and a busybox shell for logins.
set -euo pipefail
. ../lib/busybox.sh
. ../lib/debian.sh
install_busybox sh ash ls cat ps uname echo id env
debian_fetch dropbear-bin libc6 libcrypt1 zlib1g libtomcrypt1 libtommath1 libgmp10
debian_install usr/sbin/dropbear
mkdir -p "$ROOTFS/etc/dropbear" "$ROOTFS/root/.ssh"
chmod 0700 "$ROOTFS/root/.ssh"
printf 'root:x:0:0:root:/root:/bin/sh\n' > "$ROOTFS/etc/passwd"
printf 'root:x:0:\n' > "$ROOTFS/etc/group"
printf '/bin/sh\n' > "$ROOTFS/etc/shells"
