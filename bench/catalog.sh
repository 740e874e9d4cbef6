#!/usr/bin/env bash
# Catalog benchmark (issue 15, item 5): a repository with 10,000 recovery
# points; times `haven snapshots`, `haven show NAME:latest` and a whole
# `haven backup image` of a small image (which starts by choosing its parent),
# with this tree's haven against a baseline binary. See bench/README.md
# ("Catalog benchmark").
set -euo pipefail

usage() {
  cat <<'USAGE'
Usage: bench/catalog.sh [options]

  --points N   recovery points to make (default 10000)
  --names N    distinct names among them (default 100)
  --runs N     rounds of the timed commands (default 3)
  --keep       keep the repository after the run
  -h, --help   this help

Environment:
  BENCH_DIR   work dir (default /var/tmp/haven-bench); everything goes to
              BENCH_DIR/catalog/, wiped at the start
  HAVEN       haven binary under test (default $PWD/build/haven)
  HAVEN_BASE  baseline haven binary to compare with (optional)
  FILL        the setup tool (default $PWD/build/bench/fill_points)
USAGE
}

POINTS=10000
NAMES=100
RUNS=3
KEEP=0
is_uint() { [[ "$1" =~ ^[0-9]+$ ]]; }
while [ $# -gt 0 ]; do
  case "$1" in
    --points|--names|--runs)
      [ $# -ge 2 ] || { usage >&2; exit 2; }
      set -- "$1=$2" "${@:3}" ;;
    --points=*) POINTS=${1#*=}; shift ;;
    --names=*) NAMES=${1#*=}; shift ;;
    --runs=*) RUNS=${1#*=}; shift ;;
    --keep) KEEP=1; shift ;;
    -h|--help) usage; exit 0 ;;
    *) echo "unknown argument: $1" >&2; usage >&2; exit 2 ;;
  esac
done
for v in "$POINTS" "$NAMES" "$RUNS"; do
  { is_uint "$v" && [ "$v" -ge 1 ]; } || { echo "counts must be integers >= 1" >&2; exit 2; }
done

log() { printf '[catalog %(%H:%M:%S)T] %s\n' -1 "$*" >&2; }
die() { printf '[catalog] ERROR: %s\n' "$*" >&2; exit 1; }

W=${BENCH_DIR:-/var/tmp/haven-bench}/catalog
HAVEN=${HAVEN:-$PWD/build/haven}
FILL=${FILL:-$PWD/build/bench/fill_points}
HAVEN_BASE=${HAVEN_BASE:-}
IMG_SIZE=$((16 * 1024 * 1024))  # the small image: 16 MiB
BLOCK=65536
export LC_ALL=C TZ=UTC
export HAVEN_PASSWORD=haven-bench-password
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
need_pkg /usr/bin/time time
need_pkg python3 python3
[ -x "$HAVEN" ] || die "no haven binary at $HAVEN (build it, or set HAVEN)"
[ -x "$FILL" ] || die "no fill_points at $FILL (cmake --build build --target fill_points)"
[ -z "$HAVEN_BASE" ] || [ -x "$HAVEN_BASE" ] || die "HAVEN_BASE=$HAVEN_BASE is not executable"

rm -rf "$W"
mkdir -p "$W/bin" "$W/logs"
# Copies, so a rebuild during the run does not change what is measured.
cp "$HAVEN" "$W/bin/new"
TOOLS=(new)
if [ -n "$HAVEN_BASE" ]; then cp "$HAVEN_BASE" "$W/bin/base"; TOOLS=(base new); fi
R=$W/repo

# ---------------------------------------------------------------- setup
log "small image: $((IMG_SIZE >> 20)) MiB, 64 writes of random data"
truncate -s "$IMG_SIZE" "$W/small.img"
randwrite "$W/small.img" 15 64
"$W/bin/new" -r "$R" init -q >/dev/null 2>"$W/logs/init.err" || die "init: $(cat "$W/logs/init.err")"
"$W/bin/new" -r "$R" backup image "$W/small.img" --name bench-small -q \
  >/dev/null 2>"$W/logs/first.err" || die "first backup: $(cat "$W/logs/first.err")"
log "making $POINTS points ($NAMES names) with fill_points"
"$FILL" "$R" "$POINTS" "$NAMES" | tee "$W/fill.txt" >&2
HAVE=$("$W/bin/new" -r "$R" --json snapshots | python3 -c 'import json,sys; print(len(json.load(sys.stdin)))')
[ "$HAVE" = $((POINTS + 1)) ] || die "the repository lists $HAVE points, expected $((POINTS + 1))"

# Both binaries must give the same answers before anything is timed.
for t in "${TOOLS[@]}"; do
  "$W/bin/$t" -r "$R" --json snapshots | python3 -c 'import json,sys; print(" ".join(m["id"] for m in json.load(sys.stdin)))' >"$W/ids.$t"
  "$W/bin/$t" -r "$R" --json show bench-small:latest | python3 -c 'import json,sys; print(json.load(sys.stdin)["id"])' >"$W/latest.$t"
done
if [ -n "$HAVEN_BASE" ]; then
  cmp -s "$W/ids.base" "$W/ids.new" || die "the two binaries list different points"
  cmp -s "$W/latest.base" "$W/latest.new" || die "the two binaries resolve bench-small:latest differently"
fi
log "both binaries list the same $HAVE points and the same bench-small:latest"

# ---------------------------------------------------------------- rounds
printf 'tool\tround\tstep\tseconds\tmax_rss_kib\n' >"$W/raw.tsv"
timed() {  # TOOL ROUND STEP ARGS...: runs haven ARGS under /usr/bin/time
  local tool=$1 round=$2 step=$3; shift 3
  sync
  /usr/bin/time -f '%e %M' -o "$W/logs/$tool.$round.$step.time" \
    "$W/bin/$tool" -r "$R" "$@" >"$W/logs/$tool.$round.$step.out" 2>"$W/logs/$tool.$round.$step.err" \
    || die "$tool $step (round $round) failed: $(tail -3 "$W/logs/$tool.$round.$step.err")"
  read -r secs rss <"$W/logs/$tool.$round.$step.time"
  printf '%s\t%s\t%s\t%s\t%s\n' "$tool" "$round" "$step" "$secs" "$rss" >>"$W/raw.tsv"
  log "$tool $step: $secs s"
}
for round in $(seq 1 "$RUNS"); do
  for t in "${TOOLS[@]}"; do  # round by round, so load changes hit both
    timed "$t" "$round" snapshots snapshots
    timed "$t" "$round" show show bench-small:latest
    timed "$t" "$round" backup backup image "$W/small.img" --name bench-small -q
  done
done

# ---------------------------------------------------------------- report
python3 - "$W/raw.tsv" "$POINTS" "$RUNS" "${TOOLS[*]}" >"$W/results.md" <<'PY'
import csv, statistics, sys
rows = list(csv.DictReader(open(sys.argv[1]), delimiter="\t"))
points, runs, tools = sys.argv[2], sys.argv[3], sys.argv[4].split()
label = {"snapshots": "`haven snapshots`", "show": "`haven show NAME:latest`",
         "backup": "`haven backup image` (16 MiB, has a parent)"}
def med(tool, step):
    v = [float(r["seconds"]) for r in rows if r["tool"] == tool and r["step"] == step]
    return statistics.median(v), min(v), max(v)
print(f"{points} points (+1 real backup), median of {runs} runs, wall seconds\n")
head = "| command | " + " | ".join(f"{t} median (min–max)" for t in tools)
head += " | base / new | target < 1 s |" if "base" in tools else " | target < 1 s |"
print(head)
print("|" + "---|" * (head.count("|") - 1))
for step in ("snapshots", "show", "backup"):
    cells, n = [], None
    for t in tools:
        m, lo, hi = med(t, step)
        cells.append(f"{m:.2f} ({lo:.2f}–{hi:.2f})")
    n = med("new", step)[0]
    line = f"| {label[step]} | " + " | ".join(cells)
    if "base" in tools:
        line += f" | {med('base', step)[0] / max(n, 0.005):.1f}x"
    line += " | " + ("met" if n < 1 else "missed") + " |"
    print(line)
PY
cat "$W/results.md"
[ "$KEEP" = 1 ] || rm -rf "$R" "$W/small.img"
