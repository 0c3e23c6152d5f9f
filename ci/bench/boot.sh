#!/usr/bin/env bash
# ci/bench/boot.sh: hull-init's share of a boot, its size and its memory.
# Builds examples/minimal.yml for amd64 and arm64, boots each under QEMU (KVM
# when it works, TCG otherwise) and reads hull-init's timing line from the
# console. The floor, measured in the same boot, is the kernel's own time
# from power-on to starting init; the ratio is init's time (init started ->
# last service started) over it. Also prints the stripped static hull-init
# size per arch (target < 5 MB) and hull-init's RSS after boot (target < 4 MB).
# Then the same manifest with its root on disk (--root verity -f raw-efi,
# booted through UEFI firmware): time to the marker beside the
# kernel+initrd boot's, and memory in use after each boot.
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
cd "$root"
cargo build --quiet --release
hull="$root/target/release/hull"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
# ms since the epoch
now_ms() { date +%s%3N; }
for arch in amd64 arm64; do
  "$hull" -q build --arch "$arch" --dir "$work" --name "minimal-$arch" examples/minimal.yml
  t0=$(now_ms)
  "$hull" run qemu --arch "$arch" --expect "HULL-READY" --timeout 300 "$work/minimal-$arch" \
    > "$work/console-$arch.log" 2>&1 || { tail -30 "$work/console-$arch.log"; exit 1; }
  initrd_ms=$(( $(now_ms) - t0 ))
  "$hull" -q build --arch "$arch" --dir "$work" --name "verity-$arch" --root verity -f raw-efi examples/minimal.yml
  t0=$(now_ms)
  "$hull" run qemu --arch "$arch" --expect "HULL-READY" --timeout 300 "$work/verity-$arch-efi.img" \
    > "$work/verity-$arch.log" 2>&1 || { tail -30 "$work/verity-$arch.log"; exit 1; }
  verity_ms=$(( $(now_ms) - t0 ))
  mem() { grep -a "hull-init: boot: " "$1" | head -1 | sed -E 's/.*memory in use ([0-9]+) kB.*/\1/'; }
  echo "bench boot $arch: QEMU start to HULL-READY: kernel+initrd ${initrd_ms} ms, verity root on disk" \
    "${verity_ms} ms (UEFI firmware included); memory in use $(mem "$work/console-$arch.log") kB vs" \
    "$(mem "$work/verity-$arch.log") kB"
  line=$(grep -a "hull-init: boot: " "$work/console-$arch.log" | head -1)
  kernel_ms=$(sed -E 's/.*init started at ([0-9]+) ms.*/\1/' <<<"$line")
  init_ms=$(sed -E 's/.*\(([0-9]+) ms in init\).*/\1/' <<<"$line")
  rss_kb=$(sed -E 's/.*RSS ([0-9]+) kB.*/\1/' <<<"$line")
  bin=$(ci/build-init "$arch")
  size=$(stat -c %s "$bin")
  echo "bench boot $arch: kernel to init ${kernel_ms} ms (floor); init to last service ${init_ms} ms;" \
    "ratio $(echo "scale=2; $init_ms / $kernel_ms" | bc)"
  echo "bench boot $arch: hull-init stripped $(echo "scale=2; $size / 1048576" | bc) MB (target < 5);" \
    "RSS after boot $(echo "scale=2; $rss_kb / 1024" | bc) MB (target < 4)"
done
