"""Helpers for the secure-session tests: listeners of every role, users, TLS clients.

* ``secure_extra`` builds the ``extra=`` part of ``config_dict``: one listener of each
  role (inbound, submission, submissions) on 127.0.0.1 port 0, plus abuse settings that
  keep the suite fast (no tarpit, no AUTH failure delay) unless a test asks otherwise.
* ``write_users`` creates ``users.json`` in a data folder with *cheap* argon2 and SCRAM
  parameters (argon2 verification reads its parameters from the stored hash, so the
  server verifies cheaply too).  Call it before the server starts (``prepare=``).
* ``TlsSMTP`` is ``RawSMTP`` that can STARTTLS or start in TLS (implicit, RFC 8314),
  and drive a SASL exchange byte by byte.
"""

from __future__ import annotations

import base64
import socket
import ssl
import time
from pathlib import Path
from typing import Any

from argon2 import PasswordHasher

from helpers.servers import HOST
from helpers.wire import CLIENT_NAME, READ_TIMEOUT, RawSMTP, WireReply
from mailwright.accounts.users import UserStore
from mailwright.smtp._sasl_client import (
    client_mechanism,
)

FAST_HASHER = PasswordHasher(time_cost=1, memory_cost=8, parallelism=1)
SCRAM_ITERATIONS = 4096  # RFC 7677's minimum: the cheapest the store accepts

PASSWORD = "Corr3ct-h0rse-battery"
WRONG_PASSWORD = "Wr0ng-h0rse-battery"
ALICE = "alice@example.test"  # PLAIN, LOGIN, SCRAM-SHA-256
ALICE_ALIAS = "alice.smith@example.test"  # an extra address alice may send as
BOB = "bob@example.test"  # also CRAM-MD5 (opted in)

ROLES = ("inbound", "submission", "submissions")
# Tests provoke AUTH failures and errors on purpose: no tarpit, no AUTH delays, and a
# ban only after more failures than a test makes (the lockout test sets its own).
FAST_ABUSE = {
    "tarpit_delay": 0,
    "auth_base_delay": 0,
    "auth_max_delay": 0,
    "auth_max_failures": 20,
}


def listeners(**per_role: dict[str, Any]) -> list[dict[str, Any]]:
    """One listener per role on 127.0.0.1 port 0; ``per_role`` adds options by role."""
    return [{"address": HOST, "port": 0, "role": role, **per_role.get(role, {})} for role in ROLES]


def secure_extra(
    *,
    abuse: dict[str, Any] | None = None,
    listener: list[dict[str, Any]] | None = None,
    **sections: Any,
) -> dict[str, Any]:
    """``extra`` for ``config_dict``: every role, fast abuse defaults, more sections."""
    return {
        "listener": listener if listener is not None else listeners(),
        "abuse": {**FAST_ABUSE, **(abuse or {})},
        **sections,
    }


def fast_store(data_dir: Path) -> UserStore:
    return UserStore.in_data_dir(data_dir, hasher=FAST_HASHER, scram_iterations=SCRAM_ITERATIONS)


def write_users(data_dir: Path) -> None:
    """alice (with an alias) and bob (CRAM-MD5 opted in), both with ``PASSWORD``."""
    store = fast_store(data_dir)
    store.add(ALICE, PASSWORD, addresses=[ALICE_ALIAS])
    store.add(BOB, PASSWORD, cram_md5=True)


def b64(data: bytes | str) -> str:
    raw = data.encode("utf-8") if isinstance(data, str) else data
    return base64.b64encode(raw).decode("ascii")


def plain_blob(user: str, password: str, authzid: str = "") -> bytes:
    """RFC 4616: ``authzid NUL authcid NUL passwd``."""
    return f"{authzid}\0{user}\0{password}".encode()


def client_context(cafile: Path | None = None) -> ssl.SSLContext:
    """A client context; without ``cafile`` it accepts any certificate (self-signed)."""
    if cafile is not None:
        return ssl.create_default_context(cafile=str(cafile))
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


class TlsSMTP(RawSMTP):
    """``RawSMTP`` plus STARTTLS, implicit TLS and SASL exchanges."""

    def __init__(
        self,
        host: str,
        port: int,
        timeout: float = READ_TIMEOUT,
        *,
        implicit: bool = False,
        context: ssl.SSLContext | None = None,
        server_hostname: str | None = None,
    ) -> None:
        super().__init__(host, port, timeout)
        if implicit:
            self.wrap(context, server_hostname)

    def wrap(
        self, context: ssl.SSLContext | None = None, server_hostname: str | None = None
    ) -> None:
        """Run the TLS handshake on the socket (nothing may be buffered in plaintext)."""
        assert self.buf == b"", f"plaintext left over before TLS: {self.buf!r}"
        self.sock = (context or client_context()).wrap_socket(
            self.sock, server_hostname=server_hostname
        )

    @property
    def tls(self) -> ssl.SSLSocket:
        assert isinstance(self.sock, ssl.SSLSocket), "not a TLS session"
        return self.sock

    def starttls(
        self, context: ssl.SSLContext | None = None, server_hostname: str | None = None
    ) -> WireReply:
        reply = self.cmd("STARTTLS")
        assert reply.code == 220, reply
        self.wrap(context, server_hostname)
        return reply

    def silent_for(self, seconds: float) -> bool:
        """True if the server sends nothing (and does not close) for ``seconds``.
        Peeks, so any data is left unread; for plaintext sockets only."""
        assert self.buf == b"", f"unread reply already buffered: {self.buf!r}"
        self.sock.settimeout(seconds)
        try:
            self.sock.recv(1, socket.MSG_PEEK)
        except TimeoutError:
            return True
        finally:
            self.sock.settimeout(READ_TIMEOUT)
        return False

    def sasl(self, mechanism: str, user: str, password: str, *, initial: bool = True) -> WireReply:
        """A whole exchange with the project's client mechanisms; the final reply."""
        client = client_mechanism(mechanism, user, password)
        first = client.initial() if initial else None
        line = f"AUTH {mechanism}"
        if first is not None:
            line += f" {b64(first) or '='}"
        reply = self.cmd(line)
        for _ in range(5):
            if reply.code != 334:
                break
            challenge = base64.b64decode(reply.lines[0])
            reply = self.cmd(b64(client.respond(challenge)))
        return reply


def connect(
    server: Any, role: str = "submission", *, tls: bool = True, ehlo: bool = True, **kwargs: Any
) -> TlsSMTP:
    """A session on ``role``'s port, greeted; STARTTLS (or implicit TLS on
    ``submissions``) when ``tls``; then EHLO unless ``ehlo`` is false."""
    implicit = role == "submissions"
    conn = TlsSMTP(HOST, server.ports[role], implicit=implicit, **kwargs)
    try:
        conn.greeting()
        if tls and not implicit:
            conn.ehlo()
            conn.starttls()
        if ehlo:
            conn.ehlo(CLIENT_NAME)
    except BaseException:
        conn.close()
        raise
    return conn


def login(server: Any, role: str = "submission", user: str = ALICE) -> TlsSMTP:
    """A TLS session on ``role`` authenticated as ``user`` (AUTH PLAIN)."""
    conn = connect(server, role)
    reply = conn.cmd(f"AUTH PLAIN {b64(plain_blob(user, PASSWORD))}")
    assert (reply.code, reply.enhanced) == (235, "2.7.0"), reply
    return conn


def wait_for_log(server: Any, text: str, timeout: float = 5.0) -> str:
    """The mail log once it contains ``text`` (bounded wait); AssertionError if not."""
    deadline = time.monotonic() + timeout
    while True:
        log = server.mail_log()
        if text in log:
            return log
        if time.monotonic() >= deadline:
            raise AssertionError(f"{text!r} not in the mail log within {timeout}s:\n{log}")
        time.sleep(0.02)
