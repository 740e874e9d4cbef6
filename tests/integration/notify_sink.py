"""The SMTP sink of the notification tests (notify_lib.sh's notify_sink):
notify_sink.py DIR PORT_FILE [CERT KEY] saves each message as DIR/N.eml with
N.env (envelope and whether the session was TLS). With a certificate and key
it offers STARTTLS, requires it, and requires AUTH (the login written to
DIR/auth). Needs Debian's python3-aiosmtpd. Its port is written to PORT_FILE
(atomically) once it listens."""
import json, os, socket, ssl, sys, time
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult
out, port_file = sys.argv[1], sys.argv[2]
sock = socket.socket()
sock.bind(("127.0.0.1", 0))
port = sock.getsockname()[1]
sock.close()
class Sink:
    n = 0
    async def handle_DATA(self, server, session, envelope):
        Sink.n += 1
        base = os.path.join(out, str(Sink.n))
        with open(base + ".env", "w") as f:
            json.dump({"from": envelope.mail_from, "to": envelope.rcpt_tos,
                       "tls": session.ssl is not None}, f)
        with open(base + ".tmp", "wb") as f:
            f.write(envelope.original_content)
        os.rename(base + ".tmp", base + ".eml")
        return "250 OK"
def authenticator(server, session, envelope, mechanism, auth_data):
    with open(os.path.join(out, "auth"), "a") as f:
        f.write("%s %s:%s\n" % (mechanism, auth_data.login.decode(), auth_data.password.decode()))
    return AuthResult(success=True)
kw = {}
if len(sys.argv) > 4:
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(sys.argv[3], sys.argv[4])
    kw = dict(tls_context=ctx, require_starttls=True, auth_required=True,
              authenticator=authenticator)
c = Controller(Sink(), hostname="127.0.0.1", port=port, **kw)
c.start()
with open(port_file + ".tmp", "w") as f:
    f.write(str(port))
os.rename(port_file + ".tmp", port_file)
while True:
    time.sleep(3600)
