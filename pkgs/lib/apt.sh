# Shared by the helpers that ask apt: APT_OPTS, options for apt-cache and
# apt-get that keep apt's binary package cache in $HULL_PKG_CACHE (the
# directory Hull gives version commands and build steps; docs/packages.md).
# Debian's container images turn that cache off, and without it every apt
# call parses every package list again (about a second here); apt itself
# rebuilds the kept cache when a list changes, and writes it atomically.
# Empty when the directory is not given or not writable: apt then works as
# configured, only slower.
APT_OPTS=()
if [ -n "${HULL_PKG_CACHE:-}" ] && [ -d "$HULL_PKG_CACHE" ] && [ -w "$HULL_PKG_CACHE" ]; then
  APT_OPTS=(-o "Dir::Cache::pkgcache=$HULL_PKG_CACHE/apt-pkgcache.bin" -o "Dir::Cache::srcpkgcache=")
fi
