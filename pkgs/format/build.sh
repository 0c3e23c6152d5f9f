#!/usr/bin/env bash
# Fills $ROOTFS for $TARGETARCH: Debian's mkfs.ext4 with its libraries, busybox,
# and format-blank.
set -euo pipefail
. ../lib/busybox.sh
. ../lib/debian.sh
install_busybox sh ls cat cmp echo
debian_fetch e2fsprogs libext2fs2 libcom-err2 libblkid1 libuuid1 libc6
debian_install sbin/mke2fs
ln -sf mke2fs "$ROOTFS/sbin/mkfs.ext4"
mkdir -p "$ROOTFS/etc" && cp "$DEB/etc/mke2fs.conf" "$ROOTFS/etc/mke2fs.conf"
cat > "$ROOTFS/bin/format-blank" <<'SH'
#!/bin/sh
# Formats the first blank disk: its first MiB all zeros (a disk with a
# filesystem or a partition table is never blank).
for d in /sys/block/vd? /sys/block/sd? /sys/block/nvme?n?; do
  [ -e "$d" ] || continue
  dev=/dev/${d##*/}
  if ! cmp -s -n 1048576 "$dev" /dev/zero; then
    echo "format: $dev is in use (not blank): left alone"; continue
  fi
  echo "format: making ext4 labelled hull-data on $dev"
  exec /sbin/mkfs.ext4 -q -F -L hull-data "$dev"
done
echo "format: no blank disk"
SH
chmod 0755 "$ROOTFS/bin/format-blank"
