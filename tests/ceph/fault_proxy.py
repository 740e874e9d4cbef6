#!/usr/bin/env python3
"""A fault-injecting HTTP proxy in front of radosgw, for the S3 tests.

    fault_proxy.py LISTEN_PORT UPSTREAM_PORT [--every-503 N] [--every-drop M]
                   [--every-slowdown K] [--stats FILE]

Requests are forwarded byte for byte to 127.0.0.1:UPSTREAM_PORT (the Host
header the client signed goes through unchanged, so SigV4 still verifies).
Every Nth request gets "503 Service Unavailable" instead of an answer, every
Kth "503 SlowDown", and every Mth has its connection closed after the request
was read and forwarded, before any reply byte: the client cannot tell whether
the request took effect, which is the case retries must survive. The counts
of requests and of what was injected are written to --stats as JSON after
every request. A request's "Expect: 100-continue" is answered by the proxy
and not passed on.
"""
import argparse
import json
import socket
import socketserver
import threading

lock = threading.Lock()
counts = {"requests": 0, "injected_503": 0, "injected_slowdown": 0,
          "dropped": 0}


def save(path):
    if path:
        with open(path + ".tmp", "w") as f:
            json.dump(counts, f)
        import os
        os.replace(path + ".tmp", path)


CONTINUE_TO = threading.local()


def expect_continue(f):
    w = getattr(CONTINUE_TO, "writer", None)
    if w is not None:
        w.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        w.flush()


def read_head(f):
    """The header block of a request or a response, or None at EOF."""
    head = b""
    while not head.endswith(b"\r\n\r\n"):
        line = f.readline(65537)
        if not line:
            return None
        head += line
    return head


def framing(head):
    """(Content-Length or None, whether the body is chunked)."""
    length, chunked = None, False
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value.strip())
        if name.strip().lower() == b"transfer-encoding" and \
                b"chunked" in value.lower():
            chunked = True
    return length, chunked


def read_body(f, length, chunked):
    body = b""
    if chunked:
        while True:
            size_line = f.readline()
            body += size_line
            size = int(size_line.split(b";")[0].strip(), 16)
            body += f.read(size + 2)
            if size == 0:
                break
    elif length:
        body = f.read(length)
    return body


def read_request(f):
    """Reads one HTTP/1.1 request; returns its bytes, or None at EOF."""
    head = read_head(f)
    if head is None:
        return None
    length, chunked = framing(head)
    lines = head.split(b"\r\n")
    kept = [lines[0]]
    for line in lines[1:]:
        if line.partition(b":")[0].strip().lower() == b"expect":
            # Answered here (curl sends it with bodies over 1 MiB and waits
            # for it), and not passed on: the upstream's 100 would otherwise
            # be taken for its answer. Expect is not a signed header.
            expect_continue(f)
        elif line:
            kept.append(line)
    return b"\r\n".join(kept) + b"\r\n\r\n" + read_body(f, length, chunked)


def read_response(f, method):
    head = read_head(f)
    if head is None:
        return None
    status = int(head.split(b" ", 2)[1])
    if 100 <= status < 200:  # an interim answer: the real one follows
        return read_response(f, method)
    if method == b"HEAD" or status in (204, 304):
        return head
    return head + read_body(f, *framing(head))


class Handler(socketserver.StreamRequestHandler):
    def handle(self):
        up = socket.create_connection(("127.0.0.1", self.server.upstream))
        upf = up.makefile("rb")
        CONTINUE_TO.writer = self.wfile
        try:
            while True:
                req = read_request(self.rfile)
                if req is None:
                    return
                method = req.split(b" ", 1)[0]
                with lock:
                    counts["requests"] += 1
                    n = counts["requests"]
                    a = self.server.args
                    if a.every_503 and n % a.every_503 == 0:
                        kind = "503"
                    elif a.every_slowdown and n % a.every_slowdown == 0:
                        kind = "slowdown"
                    elif a.every_drop and n % a.every_drop == 0:
                        kind = "drop"
                    else:
                        kind = None
                    if kind == "503":
                        counts["injected_503"] += 1
                    elif kind == "slowdown":
                        counts["injected_slowdown"] += 1
                    elif kind == "drop":
                        counts["dropped"] += 1
                    save(a.stats)
                if kind in ("503", "slowdown"):
                    code = "ServiceUnavailable" if kind == "503" else \
                        "SlowDown"
                    body = ("<?xml version=\"1.0\"?><Error><Code>%s</Code>"
                            "<Message>injected by fault_proxy</Message>"
                            "</Error>" % code).encode()
                    self.wfile.write(
                        b"HTTP/1.1 503 Service Unavailable\r\n"
                        b"Content-Type: application/xml\r\n"
                        b"Content-Length: %d\r\n\r\n" % len(body) + body)
                    self.wfile.flush()
                    continue
                up.sendall(req)
                resp = read_response(upf, method)
                if resp is None:
                    return
                if kind == "drop":
                    return  # the request took effect; the answer is lost
                self.wfile.write(resp)
                self.wfile.flush()
        finally:
            up.close()


class Server(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True


def main():
    p = argparse.ArgumentParser()
    p.add_argument("listen", type=int)
    p.add_argument("upstream", type=int)
    p.add_argument("--every-503", type=int, default=0)
    p.add_argument("--every-slowdown", type=int, default=0)
    p.add_argument("--every-drop", type=int, default=0)
    p.add_argument("--stats", default="")
    args = p.parse_args()
    srv = Server(("127.0.0.1", args.listen), Handler)
    srv.upstream = args.upstream
    srv.args = args
    save(args.stats)
    srv.serve_forever()


if __name__ == "__main__":
    main()
