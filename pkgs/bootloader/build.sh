#!/usr/bin/env bash
# Fills $ROOTFS for $TARGETARCH with /efi/* (systemd-boot, the linux EFI stub)
# and, for amd64, /bios/* (isolinux.bin, ldlinux.c32, mbr.bin, gptmbr.bin).
set -euo pipefail
. ../lib/debian.sh
debian_fetch systemd-boot-efi
mkdir -p "$ROOTFS/efi"
cp "$DEB"/usr/lib/systemd/boot/efi/*.efi "$DEB"/usr/lib/systemd/boot/efi/*.stub "$ROOTFS/efi/"
if [ "$TARGETARCH" = amd64 ]; then
  debian_fetch isolinux syslinux-common
  mkdir -p "$ROOTFS/bios"
  cp "$DEB/usr/lib/ISOLINUX/isolinux.bin" "$DEB/usr/lib/syslinux/modules/bios/ldlinux.c32" \
     "$DEB/usr/lib/syslinux/mbr/mbr.bin" "$DEB/usr/lib/syslinux/mbr/gptmbr.bin" \
     "$DEB/usr/lib/ISOLINUX/isohdpfx.bin" "$ROOTFS/bios/"
fi
ls -R "$ROOTFS"
