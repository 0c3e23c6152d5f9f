#!/usr/bin/env bash
# Fills $ROOTFS for $TARGETARCH: busybox with a shell and the usual tools, and
# getty-console, which keeps a login shell running on the console.
set -euo pipefail
. ../lib/busybox.sh
install_busybox sh ash ls cat cp mv rm mkdir rmdir ln ps top kill mount umount dmesg \
  ip ifconfig ping wget vi less grep sed awk find df du free uname sleep echo env \
  getty login hostname date sync poweroff reboot halt
cat > "$ROOTFS/bin/getty-console" <<'SH'
#!/bin/sh
# Keep a shell on the console; INSECURE=true gives a root shell without login,
# otherwise a login prompt (passwords from /etc/shadow: root is locked unless
# a shadow file is bound in).
while true; do
  if [ "${INSECURE:-false}" = true ]; then
    setsid -c /bin/sh -l </dev/console >/dev/console 2>&1
  else
    /bin/getty 0 console
  fi
  sleep 1
done
SH
chmod 0755 "$ROOTFS/bin/getty-console"
ln -sf /bin/busybox "$ROOTFS/bin/setsid"
printf 'root:x:0:0:root:/root:/bin/sh\n' > "$ROOTFS/etc/passwd"
printf 'root:x:0:\n' > "$ROOTFS/etc/group"
printf 'root:*:0:0:99999:7:::\n' > "$ROOTFS/etc/shadow"
chmod 0600 "$ROOTFS/etc/shadow"
