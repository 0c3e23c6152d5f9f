#!/usr/bin/env bash
# Fills $ROOTFS for $TARGETARCH: busybox sysctl and a script applying every file.
set -euo pipefail
. ../lib/busybox.sh
install_busybox sh sysctl cat ls
mkdir -p "$ROOTFS/etc/sysctl.d"
cat > "$ROOTFS/bin/apply-sysctl" <<'SH'
#!/bin/sh
# Apply each sysctl file; report each failure, fail if any failed.
status=0
for f in /etc/sysctl.d/*.conf /etc/sysctl.conf; do
  [ -f "$f" ] || continue
  echo "sysctl: applying $f"
  sysctl -p "$f" || status=1
done
exit $status
SH
chmod 0755 "$ROOTFS/bin/apply-sysctl"
