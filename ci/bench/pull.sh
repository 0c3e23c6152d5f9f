#!/usr/bin/env bash
# ci/bench/pull.sh: cold pull of a multi-layer image (6 x 50 MB, incompressible)
# from a local docker-registry, against a floor measured in the same run:
# the same blobs fetched over HTTP by curl (4 at a time, as hull's default
# --jobs) into files and hashed with sha256sum. Prints the time ratio
# (target <= 1.3) and hull's peak RSS (target < 100 MB). Best of 3 runs each.
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
cd "$root"
layers="${LAYERS:-6}"
layer_mb="${LAYER_MB:-50}"
runs="${RUNS:-3}"

cargo build --quiet --release
hull="$root/target/release/hull"
. "$root/ci/bench/lib.sh"
start_registry

echo "bench: making a ${layers} x ${layer_mb} MB image with umoci"
umoci init --layout "$work/layout" >/dev/null
umoci new --image "$work/layout:big" >/dev/null
for i in $(seq "$layers"); do
  mkdir -p "$work/l$i"
  head -c "$((layer_mb * 1024 * 1024))" /dev/urandom > "$work/l$i/data$i.bin"
  tar -C "$work/l$i" -cf "$work/l$i.tar" .
  rm -rf "$work/l$i"
  umoci raw add-layer --image "$work/layout:big" "$work/l$i.tar" >/dev/null
  rm -f "$work/l$i.tar"
done
umoci config --image "$work/layout:big" --architecture amd64 --os linux >/dev/null
skopeo copy --quiet --dest-tls-verify=false "oci:$work/layout:big" "docker://127.0.0.1:$port/bench/big:1"
rm -rf "$work/layout"

ref="127.0.0.1:$port/bench/big:1"
manifest=$(curl -sf -H 'Accept: application/vnd.oci.image.manifest.v1+json' "http://127.0.0.1:$port/v2/bench/big/manifests/1")
digests=$(python3 -c 'import json,sys; m=json.loads(sys.argv[1]); print("\n".join([m["config"]["digest"]]+[l["digest"] for l in m["layers"]]))' "$manifest")
total=$(python3 -c 'import json,sys; m=json.loads(sys.argv[1]); print(sum(l["size"] for l in m["layers"])+m["config"]["size"])' "$manifest")
echo "bench: image $ref, $((total / 1024 / 1024)) MB in $(echo "$digests" | wc -l) blobs"

now() { date +%s.%N; }
best_floor=""
best_hull=""
best_rss=""
for run in $(seq "$runs"); do
  rm -rf "$work/floor"; mkdir -p "$work/floor"; sync
  t0=$(now)
  echo "$digests" | xargs -P 4 -I{} sh -c \
    "curl -sf -o '$work/floor/\$(echo {} | cut -c8-)' 'http://127.0.0.1:$port/v2/bench/big/blobs/{}' && sha256sum '$work/floor/\$(echo {} | cut -c8-)' >/dev/null"
  t1=$(now)
  floor=$(echo "$t1 - $t0" | bc -l)
  rm -rf "$work/floor" "$work/cache"; sync
  /usr/bin/time -f '%e %M' -o "$work/time" "$hull" --quiet --cache "$work/cache" cache pull --arch amd64 "$ref" >/dev/null
  read -r secs rss_kb < "$work/time"
  "$hull" --quiet --cache "$work/cache" cache verify
  echo "bench: run $run: floor ${floor}s, hull ${secs}s, hull peak RSS $((rss_kb / 1024)) MB"
  if [ -z "$best_floor" ] || (( $(echo "$floor < $best_floor" | bc -l) )); then best_floor=$floor; fi
  if [ -z "$best_hull" ] || (( $(echo "$secs < $best_hull" | bc -l) )); then best_hull=$secs; fi
  if [ -z "$best_rss" ] || [ "$rss_kb" -gt "$best_rss" ]; then best_rss=$rss_kb; fi
done
ratio=$(echo "$best_hull / $best_floor" | bc -l)
printf 'bench pull: %d MB cold pull: hull %.2fs, floor (curl+sha256sum, 4 parallel) %.2fs, ratio %.2f (target <= 1.30)\n' \
  "$((total / 1024 / 1024))" "$best_hull" "$best_floor" "$ratio"
printf 'bench pull: hull peak RSS %d MB (target < 100 MB; highest of %d runs)\n' "$((best_rss / 1024))" "$runs"
