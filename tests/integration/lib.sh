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
