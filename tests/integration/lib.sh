# Shared helpers for integration tests. Source it: . "$(dirname "$0")/lib.sh"
set -euo pipefail
: "${HAVEN:?HAVEN must point at the haven binary}"
WORK=$(mktemp -d /var/tmp/haven-test.XXXXXX)
trap 'rm -rf "$WORK"' EXIT
export HAVEN_PASSWORD=correct-horse
PASS=0
fail() { echo "FAIL: $*" >&2; exit 1; }
ok() { PASS=$((PASS + 1)); echo "ok: $*"; }
haven() { "$HAVEN" "$@"; }

# ---------------------------------------------------------------- helpers
# The real python3 binary: a pyenv shim costs about a second per start.
PYTHON=$(python3 -c 'import sys; print(sys.executable)')
py() { "$PYTHON" "$@"; }
# jget EXPR [FILE]: evaluates a Python expression over the JSON value `j`
# read from FILE (or stdin) and prints it (lists/dicts as JSON).
jget() {
  "$PYTHON" -c '
import json, sys
j = json.load(open(sys.argv[2]) if len(sys.argv) > 2 else sys.stdin)
r = eval(sys.argv[1])
print(json.dumps(r) if isinstance(r, (dict, list, bool)) else r)' "$@"
}
# run CMD...: runs CMD with stdout in $WORK/out and stderr in $WORK/err;
# its exit code is left in RC. Never fails itself.
RC=0
run() {
  set +e
  "$@" >"$WORK/out" 2>"$WORK/err"
  RC=$?
  set -e
}
# expect_rc CODE WHAT CMD...: runs CMD and fails unless it exits with CODE.
expect_rc() {
  local want=$1 what=$2
  shift 2
  run "$@"
  [ "$RC" = "$want" ] ||
    fail "$what: exit code $RC, expected $want; stderr: $(head -c 3000 "$WORK/err")"
}
# contains FILE TEXT WHAT: fails unless FILE holds TEXT (fixed string).
contains() {
  grep -qF -- "$2" "$1" || fail "$3: '$2' not found in: $(head -c 3000 "$1")"
}
# lacks FILE TEXT WHAT: fails if FILE holds TEXT.
lacks() {
  if grep -qF -- "$2" "$1"; then fail "$3: unexpected '$2' in: $(head -c 3000 "$1")"; fi
}
# same_file A B WHAT: byte-identical (cmp).
same_file() {
  cmp -s -- "$1" "$2" || fail "$3: $1 and $2 differ ($(cmp -- "$1" "$2" 2>&1 | head -1))"
}
# random_file PATH BYTES [SEED]: incompressible data; reproducible with SEED.
random_file() {
  "$PYTHON" - "$@" <<'PYEOF'
import random, sys
path, size = sys.argv[1], int(sys.argv[2])
rng = random.Random(int(sys.argv[3])) if len(sys.argv) > 3 else None
with open(path, "wb") as f:
    left = size
    while left:
        n = min(left, 1 << 20)
        f.write(rng.randbytes(n) if rng else __import__("os").urandom(n))
        left -= n
PYEOF
}
# repo_digest REPO: one hash over everything a command could wrongly change
# (config, keys/, snapshots/, packs/; not the index, a RocksDB cache).
repo_digest() {
  (cd "$1" && find config keys snapshots packs -type f -print0 | sort -z |
    xargs -0 -r sha256sum | sha256sum | cut -d' ' -f1)
}
# largest_pack REPO: path of the biggest pack file.
largest_pack() {
  find "$1/packs" -mindepth 2 -maxdepth 2 -type f -printf '%s %p\n' | sort -n | tail -1 |
    cut -d' ' -f2-
}
# real_files DST BYTES: copies this machine's shared libraries, then
# /usr/share, into DST (paths kept) until about BYTES are copied: the kind
# of data a VM disk holds, for tests that need a real file system image.
real_files() {
  "$PYTHON" - "$1" "$2" <<'PYEOF'
import os, shutil, sys
dst, limit, total = sys.argv[1], int(sys.argv[2]), 0
for top in ("/usr/lib/x86_64-linux-gnu", "/usr/share"):
    for root, dirs, files in os.walk(top):
        dirs.sort()
        for f in sorted(files):
            p = os.path.join(root, f)
            if not os.path.isfile(p) or os.path.islink(p):
                continue
            t = os.path.join(dst, p.lstrip("/"))
            os.makedirs(os.path.dirname(t), exist_ok=True)
            try:
                shutil.copy2(p, t)
            except OSError:
                continue
            total += os.path.getsize(t)
            if total >= limit:
                sys.exit(0)
PYEOF
}
