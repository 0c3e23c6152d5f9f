#!/usr/bin/env bash
# Fills $ROOTFS for $TARGETARCH: busybox httpd and the few tools a start
# script needs.
set -euo pipefail
. ../lib/busybox.sh
install_busybox sh httpd cat echo mkdir sync sleep ls uname
mkdir -p "$ROOTFS/var/lib/www"
printf 'root:x:0:0:root:/root:/bin/sh\nwww-data:x:33:33:www-data:/var/lib/www:/bin/false\n' > "$ROOTFS/etc/passwd"
printf 'root:x:0:\nwww-data:x:33:\n' > "$ROOTFS/etc/group"
