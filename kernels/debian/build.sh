#!/usr/bin/env bash
# Fills $ROOTFS with Debian's generic kernel for $TARGETARCH in LinuxKit's
# kernel layout, with the module subset of ../debian-cloud/modules.list (or
# MODULES=FILE; a file saying "all" keeps every module).
set -euo pipefail
. ../../pkgs/lib/kernel.sh
debian_kernel "linux-image-${TARGETARCH:?}" "${MODULES:-../debian-cloud/modules.list}"
