#!/usr/bin/env bash
# Prints the Debian version the cloud kernel metapackages resolve to.
set -euo pipefail
. ../../pkgs/lib/kernel.sh
debian_kernel_version linux-image-cloud-amd64 linux-image-cloud-arm64
