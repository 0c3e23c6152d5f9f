#!/usr/bin/env bash
# Fills $ROOTFS for $TARGETARCH: hull-update (static) at /usr/bin/hull-update.
set -euo pipefail
bin=$(../../ci/build-init "${TARGETARCH:?}" hull-update)
mkdir -p "$ROOTFS/usr/bin" "$ROOTFS/etc" "$ROOTFS/var/lib/hull-update" "$ROOTFS/run" "$ROOTFS/tmp"
install -m 0755 "$bin" "$ROOTFS/usr/bin/hull-update"
echo 'root:x:0:0:root:/root:/bin/false' > "$ROOTFS/etc/passwd"
