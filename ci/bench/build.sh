#!/usr/bin/env bash
# ci/bench/build.sh: warm-cache `hull build` of a manifest with 300+ MB of
# layers to kernel+initrd (gzip), against a floor measured in the same run:
# compressing the same uncompressed cpio bytes with the same codec (flate2,
# gzip level 6) on one thread. Prints the time ratio (target <= 1.0), the
# output size and hull's peak RSS. Best of 3 runs each.
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
for t in big kernel; do
  skopeo copy --quiet --dest-tls-verify=false "oci:$work/layout:$t" "docker://127.0.0.1:$port/bench/$t:1"
done
rm -rf "$work/layout"
cat > "$work/bench.yml" <<YML
kernel:
  image: 127.0.0.1:$port/bench/kernel:1
  cmdline: console=ttyS0
init:
  - 127.0.0.1:$port/bench/big:1
YML

cache="$work/cache"
"$hull" --quiet --cache "$cache" build --arch amd64 --dir "$work/warm" "$work/bench.yml" >/dev/null
"$hull" --quiet --cache "$cache" build --arch amd64 --compression none --dir "$work/plain" "$work/bench.yml" >/dev/null
cpio_mb=$(( $(stat -c %s "$work/plain/bench-initrd.img") / 1024 / 1024 ))

best_hull=""; best_floor=""; rss_max=0
for run in $(seq "$runs"); do
  rm -rf "$work/out"
  /usr/bin/time -f '%e %M' -o "$work/time" "$hull" --quiet --cache "$cache" build --arch amd64 --dir "$work/out" "$work/bench.yml" >/dev/null
  read -r secs rss_kb < "$work/time"
  read -r floor _ < <("$floor_bin" "$work/plain/bench-initrd.img")
  echo "bench: run $run: hull build ${secs}s, floor ${floor}s, peak RSS $((rss_kb / 1024)) MB"
  if [ -z "$best_hull" ] || (( $(echo "$secs < $best_hull" | bc -l) )); then best_hull=$secs; fi
  if [ -z "$best_floor" ] || (( $(echo "$floor < $best_floor" | bc -l) )); then best_floor=$floor; fi
  if [ "$rss_kb" -gt "$rss_max" ]; then rss_max=$rss_kb; fi
done
size=$(stat -c %s "$work/out/bench-initrd.img")
ratio=$(echo "$best_hull / $best_floor" | bc -l)
printf 'bench build: %d MB cpio, warm kernel+initrd (gzip): hull %.2fs, floor (1-thread gzip -6 of the same cpio) %.2fs, ratio %.2f (target <= 1.00)\n' \
  "$cpio_mb" "$best_hull" "$best_floor" "$ratio"
printf 'bench build: initrd %d MB (%.1f%% of the cpio), hull peak RSS %d MB\n' \
  "$((size / 1024 / 1024))" "$(echo "100 * $size / ($cpio_mb * 1048576)" | bc -l)" "$((rss_max / 1024))"
