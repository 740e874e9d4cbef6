#!/usr/bin/env bash
# Sweeps Haven's chunk size and zstd level on the bench dataset (made by
# bench/run.sh) and prints, for each setting: first backup time, next-night
# time and repository growth, restore time, repository size and peak memory.
#   bench/chunk-size.sh [CHUNK_SIZES] [LEVELS]     e.g. "32K 64K 128K" "1 -2"
set -euo pipefail
W=${BENCH_DIR:-/var/tmp/haven-bench}
HAVEN=${HAVEN:-$PWD/build/haven}
SIZES=${1:-32K 64K 128K 256K}
LEVELS=${2:-1}
export HAVEN_PASSWORD=haven-bench-password
[ -f "$W/image.img" ] && [ -f "$W/next.img" ] || { echo "run bench/run.sh --dataset-only first" >&2; exit 1; }
T=$W/sweep; rm -rf "$T"; mkdir -p "$T"
measure() { /usr/bin/time -f '%e %M' -o "$T/time" "$@" >/dev/null; cat "$T/time"; }
printf '| chunk | zstd | first s | next s | growth MiB | growth/changed | restore s | repo MiB | peak RSS MiB |\n|---|---|---:|---:|---:|---:|---:|---:|---:|\n'
for cs in $SIZES; do
  for lvl in $LEVELS; do
    R=$T/repo; rm -rf "$R" "$T/cur.img" "$T/out.img"
    "$HAVEN" -q -r "$R" init --chunk-size "$cs" --compression-level "$lvl"
    cp --sparse=always "$W/image.img" "$T/cur.img"; cat "$T/cur.img" >/dev/null; sync
    read -r t1 m1 < <(measure "$HAVEN" -q -r "$R" backup image "$T/cur.img" --name bench)
    s1=$(du -sb "$R" | cut -f1)
    cp --sparse=always "$W/next.img" "$T/cur.img"; cat "$T/cur.img" >/dev/null; sync
    read -r t2 m2 < <(measure "$HAVEN" -q -r "$R" backup image "$T/cur.img" --name bench)
    s2=$(du -sb "$R" | cut -f1)
    sync
    read -r t3 m3 < <(measure "$HAVEN" -q -r "$R" restore image bench:latest --to "$T/out.img")
    cmp "$T/out.img" "$T/cur.img" || { echo "restore differs for $cs/$lvl" >&2; exit 1; }
    python3 - "$cs" "$lvl" "$t1" "$t2" "$t3" "$s1" "$s2" "$m1" "$m2" "$m3" <<'PY'
import sys
cs, lvl, t1, t2, t3, s1, s2, m1, m2, m3 = sys.argv[1:]
g = (int(s2) - int(s1)) / 2**20
print(f"| {cs} | {lvl} | {float(t1):.2f} | {float(t2):.2f} | {g:.1f} | {g/62.5:.2f} | {float(t3):.2f} | {int(s2)/2**20:.0f} | {max(int(m1),int(m2),int(m3))/1024:.0f} |")
PY
  done
done
rm -rf "$T"
