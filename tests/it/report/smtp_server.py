"""A local SMTP server for tests/it/report.rs: aiosmtpd on 127.0.0.1 that requires STARTTLS and
saves each message (with its envelope and whether TLS was on) as a file in an inbox folder.

Usage: smtp_server.py CERT KEY INBOX PORT. Prints "ready" when listening; runs until stdin closes.
"""
import os
import ssl
import sys

from aiosmtpd.controller import Controller

cert, key, inbox, port = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])


class Inbox:
    def __init__(self):
        self.n = 0

    async def handle_DATA(self, server, session, envelope):
        self.n += 1
        head = "X-Starttls: %s\n" % ("yes" if session.ssl is not None else "no")
        head += "MAIL-FROM: %s\n" % envelope.mail_from
        head += "".join("RCPT: %s\n" % r for r in envelope.rcpt_tos)
        body = envelope.content.decode("utf-8", "replace")
        tmp = os.path.join(inbox, ".msg%d" % self.n)
        with open(tmp, "w") as f:
            f.write(head + "\n" + body)
        os.rename(tmp, os.path.join(inbox, "msg%d.eml" % self.n))
        return "250 OK"


ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
ctx.load_cert_chain(cert, key)
c = Controller(Inbox(), hostname="127.0.0.1", port=port, tls_context=ctx, require_starttls=True)
c.start()
print("ready", flush=True)
try:
    sys.stdin.read()
finally:
    c.stop()
