#!/usr/bin/env bash
# Fills $ROOTFS with Debian's cloud kernel for $TARGETARCH in LinuxKit's
# kernel layout. MODULES (a file of module names, default modules.list here)
# picks a subset of modules, their dependencies added; "all" keeps every one.
set -euo pipefail
. ../../pkgs/lib/kernel.sh
debian_kernel "linux-image-cloud-${TARGETARCH:?}" "${MODULES:-modules.list}"
