# Helpers shared by the bench scripts. Source it after defining log() and
# die(), and after setting IMG_SIZE and BLOCK (randwrite uses them).

# need_pkg CMD PACKAGE: installs PACKAGE with apt-get unless CMD exists.
need_pkg() {
  if ! command -v "$1" >/dev/null 2>&1 && [ ! -x "$1" ]; then
    log "installing $2 (apt-get)"
    if [ -z "${_APT_UPDATED:-}" ]; then apt-get update -qq || true; _APT_UPDATED=1; fi
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$2" >/dev/null \
      || die "could not install $2"
  fi
}

# randwrite FILE SEED COUNT: writes COUNT random BLOCK-byte blocks at distinct
# random BLOCK-aligned offsets of an IMG_SIZE-byte image. Deterministic:
# random.seed(SEED); offsets via random.sample, data via randbytes.
randwrite() {
  python3 - "$1" "$2" "$3" "$IMG_SIZE" "$BLOCK" <<'PY'
import os, random, sys
path, seed, n, size, bs = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
random.seed(seed)
slots = random.sample(range(size // bs), n)
with open(path, "r+b") as f:           # never truncates
    fd = f.fileno()
    for s in slots:
        data = random.randbytes(bs)
        assert os.pwrite(fd, data, s * bs) == bs
    f.flush()
assert os.path.getsize(path) == size, "image size changed"
PY
}
