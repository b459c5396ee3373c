#!/usr/bin/python3
"""A real SMTP server for tests, on 127.0.0.1 (Debian's python3-aiosmtpd).

Each accepted message is written to DIR/new/N.eml (through DIR/tmp, renamed
into place) with its envelope in DIR/env/N.json, BEFORE the server answers
250 to the end of DATA: when a client has its 250, the files are there.

  smtp_sink.py --dir DIR [--starttls CERT KEY | --smtps CERT KEY]
               [--fail-first N CODE] [--fail-at rcpt|data] [--auth USER PASS]
               [--hang-after-data FIFO]

Prints "listening on PORT" (a free port it bound) on stdout once it accepts
connections, and runs until SIGTERM / SIGINT. --fail-first makes the first N
transactions end with CODE (e.g. 451, 554) at RCPT TO (default) or at the end
of DATA; DIR/failed counts the refusals. --auth requires AUTH (PLAIN/LOGIN,
after STARTTLS) with that user and password. --hang-after-data stores the
first message, writes "stored N" to FIFO (a named pipe the test reads) and
then never answers that DATA: the client's transaction began and its outcome
never comes (the crash test kills the client at that point); later
transactions are answered as usual.
"""
import argparse
import asyncio
import json
import os
import signal
import ssl
import sys

from aiosmtpd.smtp import SMTP, AuthResult


class Sink:
    def __init__(self, directory, fail_first, fail_code, fail_at, hang_fifo=None):
        self.dir = directory
        self.hang_fifo = hang_fifo
        self.fail_left = fail_first
        self.fail_code = fail_code
        self.fail_at = fail_at
        self.seq = 0
        self.failed = 0
        for sub in ("new", "tmp", "env"):
            os.makedirs(os.path.join(directory, sub), exist_ok=True)

    def _refuse(self):
        self.fail_left -= 1
        self.failed += 1
        with open(os.path.join(self.dir, "failed"), "w") as f:
            f.write("%d\n" % self.failed)
        kind = "temporary" if self.fail_code < 500 else "permanent"
        return "%d test sink: %s failure" % (self.fail_code, kind)

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if self.fail_left > 0 and self.fail_at == "rcpt":
            return self._refuse()
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        if self.fail_left > 0 and self.fail_at == "data":
            return self._refuse()
        self.seq += 1
        name = "%06d" % self.seq
        tmp = os.path.join(self.dir, "tmp", name + ".eml")
        with open(tmp, "wb") as f:
            f.write(envelope.original_content)
        env = {
            "mail_from": envelope.mail_from,
            "rcpt_to": envelope.rcpt_tos,
            # STARTTLS or implicit TLS (session.ssl covers only STARTTLS)
            "tls": server.transport.get_extra_info("ssl_object") is not None,
        }
        with open(os.path.join(self.dir, "env", name + ".json"), "w") as f:
            json.dump(env, f)
        os.rename(tmp, os.path.join(self.dir, "new", name + ".eml"))
        if self.hang_fifo:
            fifo, self.hang_fifo = self.hang_fifo, None
            with open(fifo, "w") as f:
                f.write("stored %s\n" % name)
            await asyncio.Event().wait()  # never set: the client gives up or dies
        return "250 OK queued as " + name


class Authenticator:
    def __init__(self, user, password):
        self.user = user.encode()
        self.password = password.encode()

    def __call__(self, server, session, envelope, mechanism, auth_data):
        ok = auth_data.login == self.user and auth_data.password == self.password
        return AuthResult(success=ok, handled=False)


def tls_context(cert, key):
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(cert, key)
    return ctx


async def main():
    p = argparse.ArgumentParser()
    p.add_argument("--dir", required=True)
    p.add_argument("--starttls", nargs=2, metavar=("CERT", "KEY"))
    p.add_argument("--smtps", nargs=2, metavar=("CERT", "KEY"))
    p.add_argument("--fail-first", nargs=2, type=int, metavar=("N", "CODE"), default=(0, 0))
    p.add_argument("--fail-at", choices=("rcpt", "data"), default="rcpt")
    p.add_argument("--auth", nargs=2, metavar=("USER", "PASS"))
    p.add_argument("--hang-after-data", metavar="FIFO")
    a = p.parse_args()

    handler = Sink(a.dir, a.fail_first[0], a.fail_first[1], a.fail_at, a.hang_after_data)
    starttls_ctx = tls_context(*a.starttls) if a.starttls else None
    smtps_ctx = tls_context(*a.smtps) if a.smtps else None

    auth = Authenticator(*a.auth) if a.auth else None

    def factory():
        return SMTP(handler, hostname="sink.test", tls_context=starttls_ctx,
                    require_starttls=False, decode_data=False, timeout=60,
                    authenticator=auth, auth_required=auth is not None)

    loop = asyncio.get_running_loop()
    server = await loop.create_server(factory, host="127.0.0.1", port=0, ssl=smtps_ctx)
    port = server.sockets[0].getsockname()[1]
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    print("listening on %d" % port, flush=True)
    await stop.wait()
    server.close()
    await server.wait_closed()


if __name__ == "__main__":
    asyncio.run(main())
    sys.exit(0)
