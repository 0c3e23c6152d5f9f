#!/usr/bin/env bash
# Fills $ROOTFS for $TARGETARCH with /efi/* (systemd-boot, the linux EFI stub)
# and, for amd64, /bios/*: ISOLINUX for El Torito (isolinux.bin, ldlinux.c32,
# the isohybrid MBR isohdpfx.bin) and GRUB for BIOS disks (boot.img, the MBR
# code, and core.img, made here by grub-mkimage with the modules and the
# early config it needs to find the ESP labelled HULL-ESP and read
# /boot/grub/grub.cfg from it).
set -euo pipefail
. ../lib/debian.sh
debian_fetch systemd-boot-efi
mkdir -p "$ROOTFS/efi"
cp "$DEB"/usr/lib/systemd/boot/efi/*.efi "$DEB"/usr/lib/systemd/boot/efi/*.stub "$ROOTFS/efi/"
if [ "$TARGETARCH" = amd64 ]; then
  debian_fetch isolinux syslinux-common grub-pc-bin
  mkdir -p "$ROOTFS/bios"
  cp "$DEB/usr/lib/ISOLINUX/isolinux.bin" "$DEB/usr/lib/syslinux/modules/bios/ldlinux.c32" \
     "$DEB/usr/lib/ISOLINUX/isohdpfx.bin" "$DEB/usr/lib/grub/i386-pc/boot.img" "$ROOTFS/bios/"
  # grub-mkimage runs here, so it comes for the host's arch, with the one
  # library a minimal Debian may lack.
  host=$(mktemp -d)
  (cd "$host" && apt-get download -q -o APT::Sandbox::User=root "${APT_OPTS[@]}" \
     "grub-common:$(dpkg --print-architecture)" \
     "libdevmapper1.02.1:$(dpkg --print-architecture)" >/dev/null)
  for p in "$host"/*.deb; do dpkg-deb -x "$p" "$host/x"; done
  cat > "$host/early.cfg" <<'CFG'
search --no-floppy --set=root --label HULL-ESP
set prefix=($root)/boot/grub
configfile ($root)/boot/grub/grub.cfg
CFG
  LD_LIBRARY_PATH=$(find "$host/x" -name 'libdevmapper.so*' -printf '%h\n' | head -1) \
    "$host/x/usr/bin/grub-mkimage" -d "$DEB/usr/lib/grub/i386-pc" -O i386-pc \
    -o "$ROOTFS/bios/core.img" -c "$host/early.cfg" -p /boot/grub \
    biosdisk part_gpt fat search search_label configfile normal linux echo
  rm -rf "$host"
fi
ls -R "$ROOTFS"
