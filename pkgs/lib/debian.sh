# Shared by packages that take programs from Debian: debian_fetch PKG... unpacks
# the target arch's .debs into $DEB; debian_install BIN... copies programs from
# there into $ROOTFS with every shared library they need (DT_NEEDED, found in
# the unpacked packages) and the dynamic loader.
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/apt.sh"
DEB=$(mktemp -d)
trap 'rm -rf "$DEB"' EXIT
case "${TARGETARCH:?}" in
  amd64) MULTIARCH=x86_64-linux-gnu ;;
  arm64) MULTIARCH=aarch64-linux-gnu ;;
esac

debian_fetch() {
  local dl="$DEB/.debs" p
  mkdir -p "$dl"
  for p in "$@"; do
    (cd "$dl" && apt-get download -q -o APT::Sandbox::User=root "${APT_OPTS[@]}" "$p:$TARGETARCH" >/dev/null)
  done
  for p in "$dl"/*.deb; do dpkg-deb -x "$p" "$DEB"; done
  rm -rf "$dl"
}

# Where a library named $1 is in $DEB, as a path inside the image.
_find_lib() {
  local d
  for d in "lib/$MULTIARCH" "usr/lib/$MULTIARCH" lib usr/lib; do
    if [ -e "$DEB/$d/$1" ]; then echo "$d/$1"; return 0; fi
  done
  return 1
}

_copy() {
  local rel="$1"
  [ -e "$ROOTFS/$rel" ] && return 0
  mkdir -p "$ROOTFS/$(dirname "$rel")"
  cp -a "$DEB/$rel" "$ROOTFS/$rel"
  if [ -L "$DEB/$rel" ]; then
    local target
    target=$(readlink "$DEB/$rel")
    case "$target" in
      /*) _copy "${target#/}" ;;
      *) _copy "$(dirname "$rel")/$target" ;;
    esac
  fi
}

debian_install() {
  local todo=("$@") seen=" " rel lib need interp
  while [ ${#todo[@]} -gt 0 ]; do
    rel="${todo[0]#/}"; todo=("${todo[@]:1}")
    case "$seen" in *" $rel "*) continue ;; esac
    seen="$seen$rel "
    [ -e "$DEB/$rel" ] || { echo "debian_install: $rel is not in the fetched packages" >&2; return 1; }
    _copy "$rel"
    interp=$(readelf -l "$DEB/$rel" 2>/dev/null | sed -n 's/.*interpreter: \(.*\)\]/\1/p')
    [ -n "$interp" ] && todo+=("${interp#/}")
    for need in $(readelf -d "$DEB/$rel" 2>/dev/null | sed -n 's/.*(NEEDED).*\[\(.*\)\]/\1/p'); do
      lib=$(_find_lib "$need") || { echo "debian_install: $need (needed by $rel) is not in the fetched packages" >&2; return 1; }
      todo+=("$lib")
    done
  done
}
