#!/usr/bin/env bash
# Prints the Debian version the generic kernel metapackages resolve to (both
# arches; joined with "_" if they differ).
set -euo pipefail
v() {
  local pkg
  pkg=$(apt-cache depends "$1" 2>/dev/null | awk '/Depends: linux-image-/{print $2; exit}')
  [ -n "$pkg" ] || { echo "cannot resolve $1 (apt-get update?)" >&2; exit 1; }
  apt-cache show "$pkg" | awk '/^Version:/{print $2; exit}'
}
a=$(v linux-image-amd64)
b=$(v linux-image-arm64:arm64)
if [ "$a" = "$b" ]; then echo "$a"; else echo "${a}_${b}"; fi
