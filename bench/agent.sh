#!/usr/bin/env bash
# Agents (issue 18): a file backup through the appliance over loopback TLS
# against the same backup into a local repository, the appliance's CPU
# seconds per GB received, eight agents at once, and restic 0.14 backing up
# the same tree over its sftp backend to an OpenSSH server on loopback (the
# nearest remote peer that installs here). See bench/README.md ("Agents").
set -euo pipefail

usage() {
  cat <<'USAGE'
Usage: bench/agent.sh [options]

  --rounds N     interleaved rounds; medians and spreads over them (default 5)
  --data-mib N   MiB of real files (this machine's /usr) to back up (default 1024)
  --agents N     agents of the concurrent step (default 8)
  --skip-restic  no restic-over-sftp step
  --pin          clients (haven, the agent, restic) on CPU 0, servers (havend,
                 sshd) on CPU 1: each side has a core of its own, as an agent
                 and its appliance on two machines have; without it they
                 share both cores
  --keep         keep the work directory
  -h, --help     this help

Environment:
  BENCH_DIR      work dir (default /var/tmp/haven-bench); everything goes to
                 BENCH_DIR/agent/, wiped at the start (the tree is kept in
                 BENCH_DIR/agent-tree while its size matches)
  HAVEN, HAVEND  binaries (default $PWD/build/haven, $PWD/build/havend)
USAGE
}
die() { echo "bench/agent.sh: $*" >&2; exit 1; }
log() { echo "[$(date +%T)] $*" >&2; }
ROUNDS=5 DATA_MIB=1024 AGENTS=8 RESTIC=1 KEEP=0 PIN=0
while [ $# -gt 0 ]; do
  case "$1" in
    --rounds) ROUNDS=$2; shift 2 ;;
    --data-mib) DATA_MIB=$2; shift 2 ;;
    --agents) AGENTS=$2; shift 2 ;;
    --skip-restic) RESTIC=0; shift ;;
    --pin) PIN=1; shift ;;
    --keep) KEEP=1; shift ;;
    -h|--help) usage; exit 0 ;;
    *) echo "unknown argument: $1" >&2; usage >&2; exit 2 ;;
  esac
done
for v in ROUNDS DATA_MIB AGENTS; do
  [[ "${!v}" =~ ^[0-9]+$ ]] && [ "${!v}" -ge 1 ] || { echo "${v,,} must be a positive integer" >&2; exit 2; }
done
. "$(dirname "$0")/lib.sh"
BENCH_DIR=${BENCH_DIR:-/var/tmp/haven-bench}
W=$BENCH_DIR/agent
TREE=$BENCH_DIR/agent-tree
rm -rf "$W"
mkdir -p "$W/bin"
cp "${HAVEN:-$PWD/build/haven}" "$W/bin/haven" || die "build haven first"
cp "${HAVEND:-$PWD/build/havend}" "$W/bin/havend" || die "build havend first"
HAVEN=$W/bin/haven
HAVEND=$W/bin/havend
need_pkg python3 python3
need_pkg /usr/bin/time time
[ "$RESTIC" = 0 ] || { need_pkg restic restic; need_pkg /usr/sbin/sshd openssh-server; }
export HAVEN_PASSWORD=bench-password RESTIC_PASSWORD=bench-password
DPID= SSHD=
cleanup() {
  set +e
  [ -n "$DPID" ] && kill "$DPID" 2>/dev/null && wait "$DPID" 2>/dev/null
  [ -n "$SSHD" ] && kill "$SSHD" 2>/dev/null
  [ "$KEEP" = 1 ] || rm -rf "$W"
}
trap cleanup EXIT

# ---------------------------------------------------------------- the tree
if [ "$(cat "$TREE.stamp" 2>/dev/null)" != "$DATA_MIB" ]; then
  log "copying $DATA_MIB MiB of /usr into $TREE"
  rm -rf "$TREE"
  python3 - "$TREE" $((DATA_MIB << 20)) <<'PY'
import os, shutil, sys
dst, limit, total = sys.argv[1], int(sys.argv[2]), 0
for top in ("/usr/share", "/usr/lib", "/usr/bin"):
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
PY
  echo "$DATA_MIB" >"$TREE.stamp"
fi
BYTES=$(du -sb "$TREE" | cut -f1)
FILES=$(find "$TREE" -type f | wc -l)
log "tree: $BYTES bytes in $FILES files"
cat "$TREE" >/dev/null 2>&1 || true
find "$TREE" -type f -exec cat {} + >/dev/null  # page cache, for every tool alike

# cpu_of PID: utime + stime in seconds.
cpu_of() { awk -v hz="$(getconf CLK_TCK)" '{print ($14 + $15) / hz}' "/proc/$1/stat"; }
# With --pin, clients run on CPU 0 and servers on CPU 1.
CLIENT=() SERVER=()
if [ "$PIN" = 1 ]; then
  need_pkg taskset util-linux
  CLIENT=(taskset -c 0) SERVER=(taskset -c 1)
fi
# timed OUT CMD...: runs CMD (a client); appends "wall cpu maxrss_kb" to OUT.
timed() {
  local out=$1
  shift
  "${CLIENT[@]}" /usr/bin/time -f '%e %U %S %M' -o "$W/time" "$@" >"$W/cmd.out" 2>"$W/cmd.err" ||
    die "$* failed: $(tail -3 "$W/cmd.err")"
  awk '{printf "%s %.2f %s\n", $1, $2 + $3, $4}' "$W/time" >>"$out"
}

# ---------------------------------------------------------------- the appliance
STATE=$W/state
"$HAVEN" -r "$W/appliance-repo" init >/dev/null
echo "$HAVEN_PASSWORD" >"$W/pw"
chmod 600 "$W/pw"
"${SERVER[@]}" "$HAVEND" serve --state-dir "$STATE" --listen 127.0.0.1:0 --repository "main=$W/appliance-repo" \
  --password-file "$W/pw" --libvirt-uri test:///default >"$W/havend.out" 2>"$W/havend.log" &
DPID=$!
for _ in $(seq 100); do grep -q "listening on" "$W/havend.out" 2>/dev/null && break; sleep 0.1; done
PORT=$(sed -n 's#^listening on https://127\.0\.0\.1:\([0-9]*\)/$#\1#p' "$W/havend.out")
FP=$(sed -n 's/^certificate SHA-256 fingerprint: //p' "$W/havend.out")
[ -n "$PORT" ] && [ -n "$FP" ] || die "havend did not start: $(cat "$W/havend.log")"
URL=https://127.0.0.1:$PORT
enroll() { # NAME
  "$HAVEND" agent enroll-token --state-dir "$STATE" --repository main --name "$1" >"$W/enroll.out" 2>"$W/enroll.err" ||
    die "enroll-token: $(cat "$W/enroll.err")"
  HAVEN_ENROLL_TOKEN=$(grep -o 'havenenroll_[A-Za-z0-9_-]*' "$W/enroll.out" | head -1) \
    "$HAVEN" agent enroll "$URL" --fingerprint "$FP" --name "$1" --state-dir "$W/agent.$1" >/dev/null 2>"$W/enroll.err" ||
    die "haven agent enroll: $(cat "$W/enroll.err")"
}
for i in $(seq 0 "$AGENTS"); do enroll "b$i"; done

if [ "$RESTIC" = 1 ]; then
  mkdir -p "$W/ssh" "$W/restic-home"
  ssh-keygen -q -t ed25519 -N '' -f "$W/ssh/host" && ssh-keygen -q -t ed25519 -N '' -f "$W/ssh/client"
  mkdir -p /root/.ssh && chmod 700 /root/.ssh
  AK=$W/ssh/authorized_keys
  cp "$W/ssh/client.pub" "$AK"
  chmod 600 "$AK"
  mkdir -p /run/sshd
  "${SERVER[@]}" /usr/sbin/sshd -D -p 22022 -o ListenAddress=127.0.0.1 -h "$W/ssh/host" -o AuthorizedKeysFile="$AK" \
    -o PasswordAuthentication=no -o StrictModes=no -o PidFile="$W/ssh/pid" 2>"$W/ssh/log" &
  SSHD=$!
  sleep 1
  SFTP_CMD="ssh -p 22022 -i $W/ssh/client -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o LogLevel=ERROR root@127.0.0.1 -s sftp"
fi

# ---------------------------------------------------------------- rounds
: >"$W/local" ; : >"$W/remote" ; : >"$W/restic" ; : >"$W/many" ; : >"$W/appcpu"
for r in $(seq 1 "$ROUNDS"); do
  log "round $r/$ROUNDS"
  rm -rf "$W/local-repo"
  "$HAVEN" -r "$W/local-repo" init >/dev/null
  timed "$W/local" "$HAVEN" -r "$W/local-repo" backup files "$TREE" --name t
  # A fresh agent namespace each round: its first backup sends everything.
  enroll "r$r"
  c0=$(cpu_of "$DPID")
  timed "$W/remote" "$HAVEN" agent backup "$TREE" --name "t-r$r" --state-dir "$W/agent.r$r"
  c1=$(cpu_of "$DPID")
  echo "$c0 $c1" | awk -v b="$BYTES" '{printf "%.3f\n", ($2 - $1) / (b / 1e9)}' >>"$W/appcpu"
  if [ "$RESTIC" = 1 ]; then
    rm -rf "$W/restic-repo"
    restic -r "sftp:root@127.0.0.1:$W/restic-repo" -o sftp.command="$SFTP_CMD" init >/dev/null 2>&1 ||
      die "restic init over sftp failed"
    timed "$W/restic" restic -r "sftp:root@127.0.0.1:$W/restic-repo" -o sftp.command="$SFTP_CMD" \
      backup --compression auto --no-cache "$TREE"
  fi
  # N agents at once, each its first backup of the tree.
  pids=()
  start=$(date +%s.%N)
  for i in $(seq 1 "$AGENTS"); do
    enroll "m$r-$i"
    "${CLIENT[@]}" "$HAVEN" agent backup "$TREE" --name "t-m$r-$i" --state-dir "$W/agent.m$r-$i" >/dev/null 2>"$W/m$i.err" &
    pids+=($!)
  done
  for p in "${pids[@]}"; do wait "$p" || die "a concurrent agent failed: $(cat "$W"/m*.err | tail -3)"; done
  end=$(date +%s.%N)
  echo "$start $end" | awk '{printf "%.2f\n", $2 - $1}' >>"$W/many"
done

# ---------------------------------------------------------------- report
python3 - "$W" "$BYTES" "$FILES" "$AGENTS" "$RESTIC" "$PIN" <<'PY'
import statistics, sys
w, size, files, agents, restic = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), sys.argv[5] == "1"
pinned = sys.argv[6] == "1"
def rows(name):
    return [list(map(float, l.split())) for l in open(f"{w}/{name}") if l.strip()]
def med(xs): return statistics.median(xs)
def spread(xs): return f"{min(xs):.2f}-{max(xs):.2f}"
local, remote = rows("local"), rows("remote")
mb = size / 1e6
out = []
out.append(f"Tree: {size/2**20:.0f} MiB in {files} files; {len(local)} rounds; medians (spread)" +
           ("; clients on CPU 0, servers on CPU 1 (--pin)" if pinned else "") + ".\n")
out.append("| step | wall s | MB/s | CPU s (client) | peak RSS MiB |")
out.append("|---|---|---|---|---|")
def line(label, rs):
    wall = [r[0] for r in rs]
    out.append(f"| {label} | {med(wall):.2f} ({spread(wall)}) | {mb/med(wall):.0f} | {med([r[1] for r in rs]):.2f} | {med([r[2] for r in rs])/1024:.0f} |")
line("haven backup files, local repository", local)
line("haven agent backup, through havend over loopback TLS", remote)
if restic:
    line("restic backup over sftp (OpenSSH on loopback)", rows("restic"))
many = [r[0] for r in rows("many")]
appcpu = [r[0] for r in rows("appcpu")]
out.append("")
out.append(f"- remote / local throughput: **{med([r[0] for r in local])/med([r[0] for r in remote]):.2f}** (goal >= 0.8)")
if restic:
    out.append(f"- haven agent vs restic over sftp: **{med([r[0] for r in rows('restic')])/med([r[0] for r in remote]):.2f}x** faster")
out.append(f"- havend CPU seconds per GB received: **{med(appcpu):.2f}** ({spread(appcpu)})")
out.append(f"- {agents} agents at once, each a first backup of the tree: {med(many):.1f} s, total **{agents*mb/med(many):.0f} MB/s** ({spread(many)} s)")
print("\n".join(out))
PY
