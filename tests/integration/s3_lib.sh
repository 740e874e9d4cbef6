# Shared by the S3 integration tests (source it after lib.sh, with SRCDIR
# set): the Ceph cluster (ctest's shared one in $HAVEN_CEPH_DIR, else one of
# the test's own, whose directory is left in OWN_CEPH for the test's cleanup
# to stop), its s3.env, a run prefix RUN, a cache dir of machine "a", and
# s3.py with helpers to look at the bucket beside haven.
OWN_CEPH=
# ---------------------------------------------------------------- cluster
if [ -z "${HAVEN_CEPH_DIR:-}" ]; then
  HAVEN_CEPH_DIR=$WORK/ceph
  OWN_CEPH=$HAVEN_CEPH_DIR
  set +e
  "$SRCDIR/tests/ceph/ceph-cluster.sh" start "$HAVEN_CEPH_DIR"
  rc=$?
  set -e
  [ "$rc" = 77 ] && { echo "SKIP: no Ceph cluster"; exit 77; }
  [ "$rc" = 0 ] || fail "ceph-cluster.sh start exited $rc"
fi
set -a
. "$HAVEN_CEPH_DIR/s3.env"
set +a
EP=$HAVEN_S3_ENDPOINT
RUN=t-$$-$RANDOM
export HAVEN_CACHE_DIR=$WORK/cache-a

# s3.py: SigV4 requests of our own, to look at the bucket beside haven.
cat >"$WORK/s3.py" <<'PYEOF'
import datetime, hashlib, hmac, http.client, os, sys, urllib.parse
import xml.etree.ElementTree as ET
def q(s): return urllib.parse.quote(s, safe="-_.~")
def req(method, bucket, key="", query=None, headers=None, agent=False):
    ep = urllib.parse.urlparse(os.environ["HAVEN_S3_ENDPOINT"])
    kid = os.environ["HAVEN_S3_AGENT_KEY_ID" if agent else "AWS_ACCESS_KEY_ID"]
    sec = os.environ["HAVEN_S3_AGENT_SECRET" if agent else "AWS_SECRET_ACCESS_KEY"]
    t = datetime.datetime.now(datetime.timezone.utc)
    amz, day = t.strftime("%Y%m%dT%H%M%SZ"), t.strftime("%Y%m%d")
    h = dict(headers or {})
    h.update({"host": ep.netloc, "x-amz-date": amz, "x-amz-content-sha256": "UNSIGNED-PAYLOAD"})
    path = "/" + bucket + ("/" + key if key else "")
    cq = "&".join("%s=%s" % (q(k), q(v)) for k, v in sorted((query or {}).items()))
    sh = sorted((k.lower(), str(v).strip()) for k, v in h.items())
    creq = "\n".join([method, q(path).replace("%2F", "/"), cq,
                      "".join("%s:%s\n" % kv for kv in sh), ";".join(k for k, _ in sh),
                      "UNSIGNED-PAYLOAD"])
    scope = "%s/us-east-1/s3/aws4_request" % day
    sts = "\n".join(["AWS4-HMAC-SHA256", amz, scope, hashlib.sha256(creq.encode()).hexdigest()])
    k = ("AWS4" + sec).encode()
    for m in (day, "us-east-1", "s3", "aws4_request"):
        k = hmac.new(k, m.encode(), hashlib.sha256).digest()
    sig = hmac.new(k, sts.encode(), hashlib.sha256).hexdigest()
    h["Authorization"] = "AWS4-HMAC-SHA256 Credential=%s/%s, SignedHeaders=%s, Signature=%s" % (
        kid, scope, ";".join(k for k, _ in sh), sig)
    c = http.client.HTTPConnection(ep.hostname, ep.port, timeout=60)
    c.request(method, q(path).replace("%2F", "/") + ("?" + cq if cq else ""), headers=h)
    r = c.getresponse()
    return r.status, dict((k.lower(), v) for k, v in r.getheaders()), r.read()
def strip(t): return t.split("}", 1)[-1]
cmd = sys.argv[1]
if cmd == "list":  # list BUCKET PREFIX -> "SIZE KEY" lines
    bucket, prefix, token = sys.argv[2], sys.argv[3], None
    while True:
        qq = {"list-type": "2", "prefix": prefix}
        if token: qq["continuation-token"] = token
        st, _, body = req("GET", bucket, query=qq)
        if st != 200: sys.exit("list: HTTP %d %s" % (st, body[:300]))
        root = ET.fromstring(body)
        for c in root:
            if strip(c.tag) == "Contents":
                d = {strip(e.tag): e.text for e in c}
                print(d["Size"], d["Key"])
        tr = [e.text for e in root if strip(e.tag) == "IsTruncated"]
        tok = [e.text for e in root if strip(e.tag) == "NextContinuationToken"]
        if tr and tr[0] == "true" and tok: token = tok[0]
        else: break
elif cmd == "versions":  # versions BUCKET PREFIX -> "VERSIONID SIZE KEY" (not delete markers)
    bucket, prefix = sys.argv[2], sys.argv[3]
    st, _, body = req("GET", bucket, query={"versions": "", "prefix": prefix})
    if st != 200: sys.exit("versions: HTTP %d %s" % (st, body[:300]))
    for c in ET.fromstring(body):
        if strip(c.tag) == "Version":
            d = {strip(e.tag): e.text for e in c}
            print(d["VersionId"], d["Size"], d["Key"])
elif cmd == "head":  # head BUCKET KEY -> "STATUS" then headers
    st, h, _ = req("HEAD", sys.argv[2], sys.argv[3])
    print(st)
    for k, v in sorted(h.items()): print("%s: %s" % (k, v))
PYEOF
s3py() { py "$WORK/s3.py" "$@"; }
bucket_bytes() {  # BUCKET PREFIX: total size of the objects
  s3py list "$1" "$2" | awk '{s+=$1} END {print s+0}'
}
bucket_digest() {  # BUCKET PREFIX: sizes and keys of every object but locks/
  s3py list "$1" "$2" | grep -v ' [^ ]*/locks/' | sha256sum | cut -d' ' -f1
}
free_port() { py -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_port() {
  for _ in $(seq 1 100); do
    (echo >"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
    sleep 0.1
  done
  fail "nothing listens on port $1"
}
