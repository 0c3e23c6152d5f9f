#!/usr/bin/env bash
# Fills $ROOTFS for $TARGETARCH with the probe (see build.yml). Needs root
# for mknod, as the tests run.
set -euo pipefail
. ../../../pkgs/lib/busybox.sh
install_busybox sh echo cat head wc ls awk mknod mkdir readlink grep test tr id sleep rm ln
# Block nodes as an image could ship them: the dynamic majors the kernel
# gives virtio disks first.
mkdir -p "$ROOTFS/hostile" "$ROOTFS/etc"
for major in 250 251 252 253 254; do
  mknod "$ROOTFS/hostile/blk-$major-0" b "$major" 0
done
# Symlinks aimed at the host: where a runtime once put the old root, a
# resolv.conf a bind goes onto, and a directory a bind goes into.
ln -s / "$ROOTFS/.hull-old-root"
ln -s /pwned "$ROOTFS/etc/resolv.conf"
ln -s /etc "$ROOTFS/data"
cat > "$ROOTFS/bin/probe" <<'SH'
#!/bin/sh
# What a container with no capabilities, as uid 0, can reach of the host.
echo '|/bin/evil %p' > /proc/sys/kernel/core_pattern 2>/dev/null \
  && echo PROBE-CORE-PATTERN-WRITTEN || echo PROBE-CORE-PATTERN-DENIED
# "h" only prints help to the kernel log, should the write go through.
echo h > /proc/sysrq-trigger 2>/dev/null \
  && echo PROBE-SYSRQ-WRITTEN || echo PROBE-SYSRQ-DENIED
echo "PROBE-KCORE-BYTES=$(head -c 16 /proc/kcore 2>/dev/null | wc -c)"
echo "PROBE-FIRMWARE-ENTRIES=$(ls /sys/firmware 2>/dev/null | wc -l)"
disk=$(cat /sys/block/vda/dev 2>/dev/null)
echo "PROBE-DISK=${disk:-none}"
major=${disk%%:*}
node=/hostile/blk-$major-0
if [ -z "$disk" ] || [ ! -b "$node" ]; then
  echo PROBE-NO-MATCHING-NODE
else
  head -c 512 "$node" >/dev/null 2>&1 \
    && echo PROBE-SHIPPED-NODE-READ || echo PROBE-SHIPPED-NODE-DENIED
  mknod /tmp/vda b "$major" 0 2>/dev/null \
    && echo PROBE-MKNOD-ALLOWED || echo PROBE-MKNOD-DENIED
fi
SH
cat > "$ROOTFS/bin/probe-mknod" <<'SH'
#!/bin/sh
# With CAP_MKNOD a node can be made, but where a container can write, no
# node opens anything.
disk=$(cat /sys/block/vda/dev)
major=${disk%%:*}
minor=${disk##*:}
for dir in /tmp /run /dev/shm /dev; do
  mknod "$dir/vda" b "$major" "$minor" || { echo "MKNOD-FAILED-IN-$dir"; continue; }
  head -c 512 "$dir/vda" >/dev/null 2>&1 \
    && echo "MKNOD-NODE-READ-IN-$dir" || echo "MKNOD-NODE-DENIED-IN-$dir"
done
SH
cat > "$ROOTFS/bin/probe-links" <<'SH'
#!/bin/sh
# Run with binds onto /etc/resolv.conf and into /data/x, which the image
# ships as symlinks to /pwned and /etc: both must land inside this root.
echo "LINKS-OUTSIDE-MOUNTS=$(awk '$5 ~ /^\/run\/hull|hull-old-root/' /proc/self/mountinfo | wc -l)"
echo "LINKS-ROOT=$(awk '$5 == "/" { print $9 }' /proc/self/mountinfo)"
[ -d /etc/x ] && echo LINKS-BIND-INSIDE
[ -f /pwned ] && echo LINKS-RESOLV-INSIDE
SH
cat > "$ROOTFS/bin/probe-dev" <<'SH'
#!/bin/sh
# Run with the host's /dev bound in: what the device filter lets through.
head -c 512 /dev/vda >/dev/null 2>&1 && echo "DEV-$1-DISK-READ" || echo "DEV-$1-DISK-DENIED"
echo x > /dev/null && echo "DEV-$1-NULL-OK"
SH
chmod 0755 "$ROOTFS/bin/probe" "$ROOTFS/bin/probe-mknod" "$ROOTFS/bin/probe-links" "$ROOTFS/bin/probe-dev"
