# Shared by the busybox-based packages: install a static busybox for
# $TARGETARCH into $ROOTFS with the applets named on the command line.
# The binaries come from Debian's busybox-static, put in place by ci/setup.
set -euo pipefail
busybox_src="/usr/local/lib/hull/${TARGETARCH:?}/busybox"
if [ ! -x "$busybox_src" ]; then
  echo "no busybox for $TARGETARCH at $busybox_src: run ci/setup" >&2
  exit 1
fi
install_busybox() {
  mkdir -p "$ROOTFS/bin" "$ROOTFS/sbin" "$ROOTFS/usr/bin" "$ROOTFS/usr/sbin" "$ROOTFS/etc" "$ROOTFS/tmp" "$ROOTFS/root"
  chmod 1777 "$ROOTFS/tmp"
  chmod 0700 "$ROOTFS/root"
  install -m 0755 "$busybox_src" "$ROOTFS/bin/busybox"
  local applet
  for applet in "$@"; do
    ln -sf /bin/busybox "$ROOTFS/bin/$applet"
  done
}
