"""A real SMTP server for the notification tests: aiosmtpd (RFC 5321), on loopback.

    python server.py PORT OUTDIR [USER PASSWORD]

Every accepted message is written to OUTDIR as <n>.json ({"mail_from", "rcpt_tos",
"data"}), then the server answers "250". It answers recipients the way mail servers
do (replies as Postfix words them):

- a local part starting with "bounce" is refused for good at RCPT:
  "550 5.1.1 <addr>: Recipient address rejected: User unknown in virtual mailbox table";
- one starting with "later" is refused for now (greylisting):
  "450 4.2.0 <addr>: Recipient address rejected: Greylisted, see https://postgrey.schweikert.ch/";
- a message to a local part starting with "spam" is refused after DATA, for its
  content (as Postfix relays a content filter's verdict, e.g. rspamd's):
  "554 5.7.1 Spam message rejected";
- with USER and PASSWORD, AUTH PLAIN/LOGIN is required (without TLS, on loopback only)
  and a wrong password is "535 5.7.8 Authentication credentials invalid".

It prints "ready" once it accepts connections and stops when stdin closes.
"""

import json
import logging
import os
import sys
import threading
import warnings

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult


class Handler:
    def __init__(self, outdir):
        self.outdir = outdir
        self.count = 0
        self.lock = threading.Lock()

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        local = address.split("@", 1)[0].lower()
        if local.startswith("bounce"):
            return f"550 5.1.1 <{address}>: Recipient address rejected: User unknown in virtual mailbox table"
        if local.startswith("later"):
            return f"450 4.2.0 <{address}>: Recipient address rejected: Greylisted, see https://postgrey.schweikert.ch/"
        envelope.rcpt_tos.append(address)
        return "250 2.1.5 Ok"

    async def handle_DATA(self, server, session, envelope):
        if any(a.split("@", 1)[0].lower().startswith("spam") for a in envelope.rcpt_tos):
            return "554 5.7.1 Spam message rejected"
        with self.lock:
            self.count += 1
            n = self.count
        record = {
            "mail_from": envelope.mail_from,
            "rcpt_tos": envelope.rcpt_tos,
            "data": envelope.content.decode("utf-8", "replace"),
        }
        path = os.path.join(self.outdir, f"{n}.json")
        with open(path + ".tmp", "w", encoding="utf-8") as f:
            json.dump(record, f)
        os.replace(path + ".tmp", path)
        return "250 2.0.0 Ok: queued"


def main():
    port = int(sys.argv[1])
    outdir = sys.argv[2]
    user = sys.argv[3] if len(sys.argv) > 4 else None
    password = sys.argv[4] if len(sys.argv) > 4 else None
    kwargs = {}
    # AUTH without TLS is meant here: loopback, test credentials.
    warnings.filterwarnings("ignore", message="Requiring AUTH while not requiring TLS")
    logging.getLogger("mail.log").setLevel(logging.ERROR)
    if user is not None:

        def authenticator(server, session, envelope, mechanism, auth_data):
            def text(v):
                return v.decode() if isinstance(v, bytes) else v

            ok = text(auth_data.login) == user and text(auth_data.password) == password
            # handled=False: aiosmtpd answers itself ("535 5.7.8 Authentication credentials invalid").
            return AuthResult(success=ok, handled=False)

        kwargs = {"authenticator": authenticator, "auth_required": True, "auth_require_tls": False}
    controller = Controller(Handler(outdir), hostname="127.0.0.1", port=port, **kwargs)
    controller.start()
    print("ready", flush=True)
    try:
        sys.stdin.read()
    finally:
        controller.stop()


if __name__ == "__main__":
    main()
