"""The HTTP receiver of the notification tests (notify_lib.sh's notify_hook):
notify_hook.py DIR PORT_FILE saves each request as DIR/N.json (path without
the query, headers, body); /ok answers 204, /flaky 500 twice then 200, /gone
410, /hang never answers (sleeps 60 s), any other path 200. Its port is
written to PORT_FILE (atomically) once it listens."""
import json, os, sys, threading, time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
out, port_file = sys.argv[1], sys.argv[2]
lock = threading.Lock()
count = {"n": 0, "flaky": 0}
class H(BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        path = self.path.split("?")[0]
        with lock:
            count["n"] += 1
            n = count["n"]
            if path == "/flaky":
                count["flaky"] += 1
                flaky = count["flaky"]
        rec = {"path": path, "headers": {k.lower(): v for k, v in self.headers.items()},
               "body": body.decode()}
        tmp = os.path.join(out, "%d.tmp" % n)
        with open(tmp, "w") as f:
            json.dump(rec, f)
        os.rename(tmp, os.path.join(out, "%d.json" % n))
        if path == "/hang":
            time.sleep(60)
            return
        code = {"/ok": 204, "/gone": 410}.get(path, 200)
        if path == "/flaky" and flaky <= 2:
            code = 500
        self.send_response(code)
        self.send_header("Content-Length", "0")
        self.end_headers()
    def log_message(self, *a):
        pass
s = ThreadingHTTPServer(("127.0.0.1", 0), H)
s.daemon_threads = True
with open(port_file + ".tmp", "w") as f:
    f.write(str(s.server_address[1]))
os.rename(port_file + ".tmp", port_file)
s.serve_forever()
