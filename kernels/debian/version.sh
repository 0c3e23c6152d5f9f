#!/usr/bin/env bash
# Prints the Debian version the generic kernel metapackages resolve to.
set -euo pipefail
. ../../pkgs/lib/kernel.sh
debian_kernel_version linux-image-amd64 linux-image-arm64
