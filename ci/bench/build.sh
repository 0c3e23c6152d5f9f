#!/usr/bin/env bash
# ci/bench/build.sh: `hull build` of a manifest with 300+ MB of layers to
# kernel+initrd, each figure against a floor measured in the same run, best
# of $RUNS (3) each:
# - gzip, warm cache, every part compressed: against compressing the same cpio
#   bytes with one-thread gzip -6 (the same codec crate); target <= 1.0;
# - zstd, warm cache (the manifest built before, so its initrd parts are kept):
#   against `zstd -T0 -3` of the same cpio bytes; <= 1.2; and the same with
#   every part compressed (kept parts removed: the first build of a manifest
#   whose images the cache holds, unpacked), <= 1.2 too;
# - cold cache: against the warm build plus `hull cache pull` of the same
#   images into an empty cache; <= 1.1;
# - one service changed, warm cache (the other parts of the initrd reused):
#   against a full build of the same manifest; <= 0.3, and the output is
#   byte-identical to a build from nothing;
# - hull's peak RSS for each codec; <= 128 MiB;
# - a small image (examples/minimal.yml) built again: its time, no floor;
# - `hull pkg build` of a package of the same files: against one-thread gzip
#   of a tar of them; <= 1.0, peak RSS <= 128 MiB.
# "Full" builds remove the kept initrd parts first, so they compress everything.
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
cd "$root"
runs="${RUNS:-3}"
target_mb="${LAYER_MB:-320}"

cargo build --quiet --release
cargo bench --quiet --bench compress_floor --no-run 2>/dev/null
floor_bin=$(ls -t target/release/deps/compress_floor-* | grep -v '\.d$' | head -1)
hull="$root/target/release/hull"
. "$root/ci/bench/lib.sh"
start_registry

# Real files (shared libraries, binaries, data) in 4 layers, about $target_mb MB.
python3 - "$work" "$target_mb" <<'PY'
import os, sys
work, target = sys.argv[1], int(sys.argv[2]) << 20
files, total = [], 0
for top in ["/usr/lib/x86_64-linux-gnu", "/usr/lib/aarch64-linux-gnu", "/usr/share", "/usr/bin"]:
    for d, _, names in sorted(os.walk(top)):
        for n in sorted(names):
            p = os.path.join(d, n)
            if os.path.islink(p) or not os.path.isfile(p):
                continue
            s = os.path.getsize(p)
            if s > 64 << 20:
                continue
            files.append(p); total += s
            if total >= target: break
        if total >= target: break
    if total >= target: break
for i in range(4):
    with open(f"{work}/files{i}", "w") as f:
        f.write("\n".join(files[i::4]) + "\n")
print(f"bench: {len(files)} files, {total >> 20} MB")
PY
umoci init --layout "$work/layout" >/dev/null
umoci new --image "$work/layout:big" >/dev/null
for i in 0 1 2 3; do
  tar -cf "$work/l$i.tar" -T "$work/files$i" 2>/dev/null
  umoci raw add-layer --image "$work/layout:big" "$work/l$i.tar" >/dev/null
  rm -f "$work/l$i.tar"
done
umoci config --image "$work/layout:big" --architecture amd64 --os linux >/dev/null
umoci new --image "$work/layout:kernel" >/dev/null
mkdir -p "$work/k" && head -c 8000000 /dev/urandom > "$work/k/kernel" && tar -C "$work/k" -cf "$work/k.tar" kernel
umoci raw add-layer --image "$work/layout:kernel" "$work/k.tar" >/dev/null
umoci config --image "$work/layout:kernel" --architecture amd64 --os linux >/dev/null
# Two versions of a small service image: the "one service changed".
for v in 1 2; do
  umoci new --image "$work/layout:svc$v" >/dev/null
  mkdir -p "$work/s$v/bin" && cp /bin/busybox "$work/s$v/bin/" && echo "version $v" > "$work/s$v/version"
  tar -C "$work/s$v" -cf "$work/s$v.tar" .
  umoci raw add-layer --image "$work/layout:svc$v" "$work/s$v.tar" >/dev/null
  umoci config --image "$work/layout:svc$v" --architecture amd64 --os linux --config.cmd /bin/busybox --config.cmd sleep --config.cmd 1000 >/dev/null
done
for t in big kernel svc1 svc2; do
  skopeo copy --quiet --dest-tls-verify=false "oci:$work/layout:$t" "docker://127.0.0.1:$port/bench/$t:1"
done
rm -rf "$work/layout"
manifest() { # NAME SERVICE-TAG
  cat > "$work/$1.yml" <<YML
kernel:
  image: 127.0.0.1:$port/bench/kernel:1
  cmdline: console=ttyS0
init:
  - 127.0.0.1:$port/bench/big:1
services:
  - name: app
    image: 127.0.0.1:$port/bench/$2:1
YML
}
manifest bench svc1
manifest changed svc2

cache="$work/cache"
build() { # NAME DIR [ARGS...]: quiet hull build into DIR
  local name=$1 dir=$2; shift 2
  rm -rf "$dir"
  "$hull" --quiet --cache "$cache" build --arch amd64 --dir "$dir" "$@" "$work/$name.yml" >/dev/null
}
timed() { # FILE CMD...: runs CMD (a function too), "SECONDS PEAK-KB" into FILE
  local file=$1; shift
  if [ "$1" = build ]; then
    local name=$2 dir=$3; shift 3
    rm -rf "$dir"
    /usr/bin/time -f '%e %M' -o "$file" "$hull" --quiet --cache "$cache" build --arch amd64 --dir "$dir" "$@" "$work/$name.yml" >/dev/null
  else
    /usr/bin/time -f '%e %M' -o "$file" "$@" >/dev/null
  fi
}
full() { rm -rf "$cache/.hull/initrd-parts"; }
min() { if [ -z "$1" ] || (( $(echo "$2 < $1" | bc -l) )); then echo "$2"; else echo "$1"; fi; }

build bench "$work/warm"
build bench "$work/plain" --compression none
cpio="$work/plain/bench-initrd.img"
cpio_mb=$(( $(stat -c %s "$cpio") / 1024 / 1024 ))

gz=""; gz_floor=""; zs=""; zs_floor=""; zs_warm=""; rss_gz=0; rss_zs=0
for run in $(seq "$runs"); do
  full; timed "$work/t" build bench "$work/out"; read -r secs kb < "$work/t"
  read -r floor _ < <("$floor_bin" "$cpio")
  echo "bench: run $run: gzip build ${secs}s (floor ${floor}s), peak RSS $((kb / 1024)) MB"
  gz=$(min "$gz" "$secs"); gz_floor=$(min "$gz_floor" "$floor"); (( kb > rss_gz )) && rss_gz=$kb
  full; timed "$work/t" build bench "$work/outz" --compression zstd; read -r secs kb < "$work/t"
  start=$(date +%s.%N); zstd -q -T0 -3 -c "$cpio" > "$work/floor.zst"; floor=$(echo "$(date +%s.%N) - $start" | bc -l)
  echo "bench: run $run: zstd build ${secs}s (floor ${floor}s), peak RSS $((kb / 1024)) MB"
  zs=$(min "$zs" "$secs"); zs_floor=$(min "$zs_floor" "$floor"); (( kb > rss_zs )) && rss_zs=$kb
  timed "$work/t" build bench "$work/outz2" --compression zstd; read -r secs kb < "$work/t"
  cmp "$work/outz/bench-initrd.img" "$work/outz2/bench-initrd.img"
  echo "bench: run $run: zstd build again (parts kept) ${secs}s, peak RSS $((kb / 1024)) MB"
  zs_warm=$(min "$zs_warm" "$secs"); (( kb > rss_zs )) && rss_zs=$kb
done
gz_size=$(stat -c %s "$work/out/bench-initrd.img"); zs_size=$(stat -c %s "$work/outz/bench-initrd.img")
floor_zs_size=$(stat -c %s "$work/floor.zst")

# Cold: an empty cache each time, against a warm build plus pulling the same
# images (which unpacks their layers, as the cold build does).
cold=""; pull=""
for run in $(seq "$runs"); do
  rm -rf "$cache"; timed "$work/t" build bench "$work/out"; read -r c _ < "$work/t"; cold=$(min "$cold" "$c")
  rm -rf "$cache"
  timed "$work/t" "$hull" --quiet --cache "$cache" cache pull --arch amd64 \
    "127.0.0.1:$port/bench/kernel:1" "127.0.0.1:$port/bench/big:1" "127.0.0.1:$port/bench/svc1:1" >/dev/null
  read -r p _ < "$work/t"; pull=$(min "$pull" "$p")
  echo "bench: run $run: cold build ${c}s, pull ${p}s"
done

# One service changed: the full build of the changed manifest vs. the build
# of it right after the original was built (its parts kept).
change=""; change_full=""
for run in $(seq "$runs"); do
  full; build bench "$work/out"
  timed "$work/t" build changed "$work/changed"; cp "$work/t" "$work/t.c"; read -r secs _ < "$work/t"; change=$(min "$change" "$secs")
  full; timed "$work/t" build changed "$work/scratch"; read -r secs _ < "$work/t"; change_full=$(min "$change_full" "$secs")
  echo "bench: run $run: one service changed $(head -c 6 "$work/t.c")s, full build ${secs}s"
  cmp "$work/changed/changed-initrd.img" "$work/scratch/changed-initrd.img" \
    || { echo "bench: FAIL: the rebuild differs from a build from nothing"; exit 1; }
done

# A package of the same files (a first-use or `hull pkg build` of a large
# package): its layer streamed and gzipped on every core, against one-thread
# gzip -6 of a tar of the same files; the step copying the files is in hull's
# time, not the floor's.
mkdir -p "$work/bigpkg"
echo "image: bench/bigpkg" > "$work/bigpkg/build.yml"
printf 'cat %s/files? | tar -cf - -T - 2>/dev/null | tar -C "$ROOTFS" -xf -\n' "$work" > "$work/bigpkg/build.sh"
cat "$work"/files? | tar -cf "$work/pkg.tar" -T - 2>/dev/null
pk=""; pk_floor=""; rss_pk=0
for run in $(seq "$runs"); do
  timed "$work/t" "$hull" --quiet --cache "$work/pkgcache" pkg build --force --arch amd64 "$work/bigpkg"
  read -r secs kb < "$work/t"
  read -r floor _ < <("$floor_bin" "$work/pkg.tar")
  echo "bench: run $run: package build ${secs}s (floor ${floor}s), peak RSS $((kb / 1024)) MB"
  pk=$(min "$pk" "$secs"); pk_floor=$(min "$pk_floor" "$floor"); (( kb > rss_pk )) && rss_pk=$kb
done
rm -f "$work/pkg.tar"

# A small image as a user builds it again: examples/minimal.yml (Debian's
# cloud kernel with its modules, hull-init, busybox), in the user's cache (its
# packages built there on first use). What is left of a warm build.
"$hull" --quiet build --arch amd64 --dir "$work/minimal" "$root/examples/minimal.yml" >/dev/null
small=""
for run in $(seq "$runs"); do
  timed "$work/t" "$hull" --quiet build --arch amd64 --dir "$work/minimal" "$root/examples/minimal.yml"
  read -r secs _ < "$work/t"; small=$(min "$small" "$secs")
done

ratio() { echo "$1 / $2" | bc -l; }
printf 'bench build: %d MB cpio\n' "$cpio_mb"
printf 'bench build: gzip warm: hull %.2fs, floor (1-thread gzip -6 of the same cpio) %.2fs, ratio %.2f (target <= 1.00); initrd %d MB (floor gzip: same codec)\n' \
  "$gz" "$gz_floor" "$(ratio "$gz" "$gz_floor")" "$((gz_size >> 20))"
printf 'bench build: zstd warm (built before, its parts kept): hull %.2fs, floor (zstd -T0 -3 of the same cpio) %.2fs, ratio %.2f (target <= 1.20)\n' \
  "$zs_warm" "$zs_floor" "$(ratio "$zs_warm" "$zs_floor")"
printf 'bench build: zstd, every part compressed (first build of the manifest, images cached): hull %.2fs, ratio %.2f to the same floor (target <= 1.20); initrd %d MB, floor %d MB\n' \
  "$zs" "$(ratio "$zs" "$zs_floor")" "$((zs_size >> 20))" "$((floor_zs_size >> 20))"
printf 'bench build: cold: hull %.2fs, floor (warm gzip build + hull cache pull %.2fs) %.2fs, ratio %.2f (target <= 1.10)\n' \
  "$cold" "$pull" "$(echo "$gz + $pull" | bc -l)" "$(ratio "$cold" "$(echo "$gz + $pull" | bc -l)")"
printf 'bench build: one service changed: hull %.2fs, full build of the same manifest %.2fs, ratio %.2f (target <= 0.30), output identical to a build from nothing\n' \
  "$change" "$change_full" "$(ratio "$change" "$change_full")"
printf 'bench build: peak RSS: gzip %d MiB, zstd %d MiB (target <= 128)\n' "$((rss_gz / 1024))" "$((rss_zs / 1024))"
printf 'bench build: small image (examples/minimal.yml, %d KB initrd) built again: %.2fs\n' \
  "$(( $(stat -c %s "$work/minimal/minimal-initrd.img") / 1024 ))" "$small"
printf 'bench build: package of the same files: hull pkg build %.2fs, floor (1-thread gzip -6 of a tar of them) %.2fs, ratio %.2f (target <= 1.00); peak RSS %d MiB (target <= 128)\n' \
  "$pk" "$pk_floor" "$(ratio "$pk" "$pk_floor")" "$((rss_pk / 1024))"
