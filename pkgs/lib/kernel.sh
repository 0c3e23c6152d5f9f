# Shared by kernel packages: debian_kernel METAPACKAGE MODULES_FILE fills
# $ROOTFS with kernel, kernel.tar, config and System.map from the Debian kernel
# package METAPACKAGE resolves to, for $TARGETARCH.
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/apt.sh"

debian_kernel() {
  local meta="$1" list="$2" work pkg ver
  [ "${TARGETARCH:?}" = arm64 ] && meta="$meta:arm64"
  work=$(mktemp -d)
  trap 'rm -rf "$work"' RETURN
  pkg=$(apt-cache "${APT_OPTS[@]}" depends "$meta" | awk '/Depends: linux-image-/{print $2; exit}')
  [ -n "$pkg" ] || { echo "cannot resolve $meta (apt-get update?)" >&2; return 1; }
  (cd "$work" && apt-get download -q -o APT::Sandbox::User=root "${APT_OPTS[@]}" "$pkg" >/dev/null)
  dpkg-deb -x "$work"/*.deb "$work/x"
  ver=$(ls "$work/x/lib/modules")
  install -m 0644 "$work/x/boot/vmlinuz-$ver" "$ROOTFS/kernel"
  install -m 0644 "$work/x/boot/config-$ver" "$ROOTFS/config"
  install -m 0644 "$work/x/boot/System.map-$ver" "$ROOTFS/System.map"
  local mods="$work/x/lib/modules/$ver"
  if [ -f "$list" ] && ! grep -qx all "$list"; then
    # name -> path, then the closure of the list over "depends".
    find "$mods/kernel" -name '*.ko*' | while read -r f; do
      n=$(basename "$f"); n=${n%%.ko*}; echo "${n//-/_} $f"
    done | sort > "$work/index"
    grep -v '^#' "$list" | sed '/^$/d' | tr '-' '_' | sort -u > "$work/want"
    : > "$work/keep"
    while [ -s "$work/want" ]; do
      : > "$work/next"
      while read -r m; do
        grep -qx "$m" "$work/keep" && continue
        f=$(awk -v m="$m" '$1==m{print $2; exit}' "$work/index")
        if [ -z "$f" ]; then echo "module $m: not in $pkg (built in?)" >&2; continue; fi
        echo "$m" >> "$work/keep"
        echo "$f" >> "$work/files"
        modinfo -F depends "$f" | tr ',' '\n' | sed '/^$/d' | tr '-' '_' >> "$work/next"
      done < "$work/want"
      sort -u "$work/next" > "$work/want"
    done
    find "$mods" -maxdepth 1 -type f -name 'modules.builtin*' -printf '%p\n' >> "$work/files"
    sed "s|^$work/x/||" "$work/files" | sort -u > "$work/list"
  else
    (cd "$work/x" && find "lib/modules/$ver" -type f | sort) > "$work/list"
  fi
  tar -C "$work/x" --sort=name --owner=0 --group=0 --numeric-owner --mtime=@0 \
    --no-recursion -cf "$ROOTFS/kernel.tar" -T "$work/list"
  echo "kernel $ver for $TARGETARCH: $(wc -l < "$work/list") files in kernel.tar"
}

# debian_kernel_version META_AMD64 META_ARM64: the Debian version both
# metapackages resolve to (joined with "_" if they differ), e.g. 6.1.192-2:
# their candidate versions, which their kernel packages share (they depend
# on "= VERSION"). One apt-cache call with the binary cache of apt.sh: this
# runs on every build that uses the package.
debian_kernel_version() {
  local a b _rest
  read -r a b _rest <<<"$(apt-cache "${APT_OPTS[@]}" policy "$1" "$2:arm64" 2>/dev/null |
    awk '/Candidate:/{printf "%s ", $2}') "
  if [ -z "$a" ] || [ -z "$b" ] || [ "$a" = "(none)" ] || [ "$b" = "(none)" ]; then
    echo "cannot resolve $1 and $2:arm64 (apt-get update?)" >&2
    return 1
  fi
  if [ "$a" = "$b" ]; then echo "$a"; else echo "${a}_${b}"; fi
}
