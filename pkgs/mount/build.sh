#!/usr/bin/env bash
# Fills $ROOTFS for $TARGETARCH: busybox mount/blkid and mount-data.
set -euo pipefail
. ../lib/busybox.sh
install_busybox sh mount umount findfs mkdir echo ls
cat > "$ROOTFS/bin/mount-data" <<'SH'
#!/bin/sh
# Mount the filesystem labelled hull-data (or $1) at /var/lib (or $2).
label=${1:-hull-data}; target=${2:-/var/lib}
dev=$(findfs "LABEL=$label" 2>/dev/null)
[ -n "$dev" ] || { echo "mount: no filesystem labelled $label"; exit 1; }
mkdir -p "$target"
mount -t ext4 "$dev" "$target" && echo "mount: $dev on $target"
SH
chmod 0755 "$ROOTFS/bin/mount-data"
