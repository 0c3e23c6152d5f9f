#!/usr/bin/env bash
# Fills $ROOTFS for $TARGETARCH: Debian's mkfs.ext4 with its libraries, busybox,
# and format-blank.
set -euo pipefail
. ../lib/busybox.sh
. ../lib/debian.sh
install_busybox sh ls cat dd od head grep sleep echo blkid
debian_fetch e2fsprogs libext2fs2 libcom-err2 libblkid1 libuuid1 libc6
debian_install sbin/mke2fs
ln -sf mke2fs "$ROOTFS/sbin/mkfs.ext4"
mkdir -p "$ROOTFS/etc" && cp "$DEB/etc/mke2fs.conf" "$ROOTFS/etc/mke2fs.conf"
cat > "$ROOTFS/bin/format-blank" <<'SH'
#!/bin/sh
# Format the first whole disk whose first MiB is all zeros (a blank disk).
for d in /sys/block/vd? /sys/block/sd? /sys/block/nvme?n?; do
  [ -e "$d" ] || continue
  dev=/dev/${d##*/}
  if [ -n "$(blkid "$dev" 2>/dev/null)" ]; then
    echo "format: $dev already has a filesystem"; continue
  fi
  if dd if="$dev" bs=1024 count=1024 2>/dev/null | od -An -tx1 | grep -qv '^ *\(00 \)*00 *$'; then
    echo "format: $dev is not blank"; continue
  fi
  echo "format: making ext4 on $dev"
  exec /sbin/mkfs.ext4 -q -F -L hull-data "$dev"
done
echo "format: no blank disk"
SH
chmod 0755 "$ROOTFS/bin/format-blank"
