# Shared by the busybox-based packages: install a static busybox for
# $TARGETARCH into $ROOTFS with the applets named on the command line.
# The binaries come from Debian's busybox-static, put in place by ci/setup.
set -euo pipefail
busybox_src="/usr/local/lib/hull/${TARGETARCH:?}/busybox"
if [ ! -x "$busybox_src" ]; then
  echo "no busybox for $TARGETARCH at $busybox_src: run ci/setup" >&2
  exit 1
fi
# The applets this busybox has (Debian builds the same set for every arch;
# the host's copy is the one that runs here).
busybox_applets() {
  local host=amd64
  [ "$(uname -m)" = aarch64 ] && host=arm64
  "/usr/local/lib/hull/$host/busybox" --list
}
install_busybox() {
  local have missing=()
  have=$(busybox_applets)
  for applet in "$@"; do
    grep -qx "$applet" <<<"$have" || missing+=("$applet")
  done
  if [ ${#missing[@]} -gt 0 ]; then
    echo "busybox has no applet: ${missing[*]}" >&2
    return 1
  fi
  mkdir -p "$ROOTFS/bin" "$ROOTFS/sbin" "$ROOTFS/usr/bin" "$ROOTFS/usr/sbin" "$ROOTFS/etc" "$ROOTFS/tmp" "$ROOTFS/root"
  chmod 1777 "$ROOTFS/tmp"
  chmod 0700 "$ROOTFS/root"
  install -m 0755 "$busybox_src" "$ROOTFS/bin/busybox"
  local applet
  for applet in "$@"; do
    ln -sf /bin/busybox "$ROOTFS/bin/$applet"
  done
}
