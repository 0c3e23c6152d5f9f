#!/usr/bin/env bash
# ci/bench/formats.sh: each bootable format against kernel+initrd, from a warm
# cache, for examples/minimal.yml on both arches. The floor, measured in the
# same run, is the kernel+initrd build of the same manifest: prints each
# format's build time ratio (target <= 1.2) and its size against the
# kernel+initrd size (target <= 1.05x + 2 MB for the bootloader; allocated
# bytes, as the raw disks are sparse). Builds are timed round-robin (floor,
# then each format, RUNS rounds, default 5) and the best of each is kept, so
# drift in the machine's speed hits floor and formats alike. BIOS formats:
# amd64 only.
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
cd "$root"
runs="${RUNS:-5}"
cargo build --quiet --release
hull="$root/target/release/hull"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# Wall time of one build of format $2 for arch $1, in seconds.
timed() {
  local arch=$1 format=$2 start end
  rm -rf "$work/$arch-$format"
  start=$(date +%s.%N)
  "$hull" -q build --arch "$arch" --format "$format" --dir "$work/$arch-$format" examples/minimal.yml
  end=$(date +%s.%N)
  echo "$end - $start" | bc
}

output() {
  local dir="$work/$1-$2"
  case $2 in
    uki) echo "$dir/minimal.efi" ;;
    raw-efi) echo "$dir/minimal-efi.img" ;;
    qcow2-efi) echo "$dir/minimal-efi.qcow2" ;;
    iso-efi) echo "$dir/minimal-efi.iso" ;;
    iso-bios) echo "$dir/minimal.iso" ;;
    raw-bios) echo "$dir/minimal-bios.img" ;;
    qcow2-bios) echo "$dir/minimal.qcow2" ;;
  esac
}

for arch in amd64 arm64; do
  # Warm the cache (packages built on first use) before timing anything.
  "$hull" -q build --arch "$arch" --format uki --dir "$work/warm" examples/minimal.yml
  formats="uki raw-efi qcow2-efi iso-efi"
  [ "$arch" = amd64 ] && formats="$formats iso-bios raw-bios qcow2-bios"
  declare -A best=()
  for _ in $(seq "$runs"); do
    for format in kernel+initrd $formats; do
      t=$(timed "$arch" "$format")
      if [ -z "${best[$format]:-}" ] || [ "$(echo "$t < ${best[$format]}" | bc)" = 1 ]; then
        best[$format]=$t
      fi
    done
  done
  floor=${best[kernel+initrd]}
  floor_size=$(( $(stat -c %s "$work/$arch-kernel+initrd/minimal-kernel") + \
                 $(stat -c %s "$work/$arch-kernel+initrd/minimal-initrd.img") ))
  echo "bench formats $arch: kernel+initrd ${floor} s (floor), $((floor_size / 1024)) KiB"
  for format in $formats; do
    t=${best[$format]}
    file=$(output "$arch" "$format")
    # Allocated bytes: the raw disks are sparse (their ESP is at least 40 MiB).
    size=$(( $(stat -c %b "$file") * $(stat -c %B "$file") ))
    echo "bench formats $arch: $format ${t} s, time ratio $(echo "scale=2; $t / $floor" | bc) (target <= 1.2);" \
      "$((size / 1024)) KiB, size ratio $(echo "scale=3; $size / $floor_size" | bc)," \
      "over 1.05x floor by $(( (size - floor_size * 105 / 100) / 1024 )) KiB (target <= 2048)"
  done
  unset best
done
