#!/usr/bin/env bash
# ci/bench/formats.sh: each bootable format against kernel+initrd, from a warm
# cache, for examples/minimal.yml on both arches. The floor, measured in the
# same run, is the kernel+initrd build of the same manifest: prints each
# format's build time ratio (target <= 1.2) and its size against the
# kernel+initrd size (target <= 1.05x + 2 MB for the bootloader; allocated
# bytes, as the raw disks are sparse). Best of 5 (RUNS=N). BIOS formats: amd64 only.
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
cd "$root"
runs="${RUNS:-5}"
cargo build --quiet --release
hull="$root/target/release/hull"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# Best wall time of $runs builds of format $2 for arch $1, in seconds.
best() {
  local arch=$1 format=$2 best_t="" t
  for _ in $(seq "$runs"); do
    rm -rf "$work/$arch-$format"
    local start end
    start=$(date +%s.%N)
    "$hull" -q build --arch "$arch" --format "$format" --dir "$work/$arch-$format" examples/minimal.yml
    end=$(date +%s.%N)
    t=$(echo "$end - $start" | bc)
    if [ -z "$best_t" ] || [ "$(echo "$t < $best_t" | bc)" = 1 ]; then best_t=$t; fi
  done
  echo "$best_t"
}

for arch in amd64 arm64; do
  # Warm the cache (packages built on first use) before timing anything.
  "$hull" -q build --arch "$arch" --format uki --dir "$work/warm" examples/minimal.yml
  floor=$(best "$arch" kernel+initrd)
  floor_size=$(( $(stat -c %s "$work/$arch-kernel+initrd/minimal-kernel") + \
                 $(stat -c %s "$work/$arch-kernel+initrd/minimal-initrd.img") ))
  echo "bench formats $arch: kernel+initrd ${floor} s (floor), $((floor_size / 1024)) KiB"
  formats="uki raw-efi qcow2-efi iso-efi"
  [ "$arch" = amd64 ] && formats="$formats iso-bios raw-bios qcow2-bios"
  for format in $formats; do
    t=$(best "$arch" "$format")
    case $format in
      uki) file="$work/$arch-$format/minimal.efi" ;;
      raw-efi) file="$work/$arch-$format/minimal-efi.img" ;;
      qcow2-efi) file="$work/$arch-$format/minimal-efi.qcow2" ;;
      iso-efi) file="$work/$arch-$format/minimal-efi.iso" ;;
      iso-bios) file="$work/$arch-$format/minimal.iso" ;;
      raw-bios) file="$work/$arch-$format/minimal-bios.img" ;;
      qcow2-bios) file="$work/$arch-$format/minimal.qcow2" ;;
    esac
    # Allocated bytes: the raw disk is sparse (its ESP is at least 40 MiB).
    size=$(( $(stat -c %b "$file") * $(stat -c %B "$file") ))
    echo "bench formats $arch: $format ${t} s, time ratio $(echo "scale=2; $t / $floor" | bc) (target <= 1.2);" \
      "$((size / 1024)) KiB, size ratio $(echo "scale=3; $size / $floor_size" | bc)," \
      "over 1.05x floor by $(( (size - floor_size * 105 / 100) / 1024 )) KiB (target <= 2048)"
  done
done
