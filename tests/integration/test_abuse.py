"""Abuse controls over real sessions: message/recipient rate limits (token buckets,
451 4.7.1 with a retry hint) per IP and per authenticated user, and the tarpit.

Limits are set tiny in the config (rate 1/min, burst 2) so the third request is over.
The per-IP connection cap and the error-count disconnect are tested in
``test_limits.py``.
"""

from __future__ import annotations

import re
import socket
import time

import pytest

from helpers.procs import wait_until
from helpers.secure import ALICE, connect, login, secure_extra, write_users
from helpers.servers import HOST
from helpers.wire import RawSMTP

RETRY_HINT = re.compile(r"try again in (\d+) s")


def abuse_server(make_server, **abuse):
    return make_server(extra=secure_extra(abuse=abuse), prepare=write_users)


def assert_rate_limited(reply, what: str) -> None:
    assert (reply.code, reply.enhanced) == (451, "4.7.1"), reply
    assert what in reply.text, reply
    hint = RETRY_HINT.search(reply.text)
    assert hint, reply
    assert 1 <= int(hint.group(1)) <= 60  # one token per minute: at most a minute


def test_ip_message_rate_limit_451_with_retry_hint(make_server):
    server = abuse_server(make_server, ip_messages_per_minute=1, burst_messages=2)
    with connect(server, "inbound", tls=False) as c:
        for _ in range(2):
            assert c.cmd("MAIL FROM:<sender@remote.test>").code == 250
            assert c.cmd("RSET").code == 250
        assert_rate_limited(c.cmd("MAIL FROM:<sender@remote.test>"), "messages")
    # The bucket belongs to the IP, not the session.
    with connect(server, "inbound") as c:
        assert_rate_limited(c.cmd("MAIL FROM:<sender@remote.test>"), "messages")
    assert "messages rate limit for ip:127.0.0.1" in server.mail_log()


def test_ip_recipient_rate_limit_451(make_server):
    server = abuse_server(make_server, ip_recipients_per_minute=1, burst_recipients=2)
    with connect(server, "inbound", tls=False) as c:
        assert c.cmd("MAIL FROM:<sender@remote.test>").code == 250
        assert c.cmd("RCPT TO:<alice@example.test>").code == 250
        assert c.cmd("RCPT TO:<bob@example.test>").code == 250
        assert_rate_limited(c.cmd("RCPT TO:<alice@example.test>"), "recipients")
        # The transaction goes on with the recipients already accepted.
        assert c.cmd("DATA").code == 354


def test_user_rate_limit_is_per_user_not_per_ip(make_server):
    """Authenticated sessions are counted per user: an IP that exhausted its own
    budget can still submit after AUTH, until the *user's* bucket is empty."""
    server = abuse_server(
        make_server,
        ip_messages_per_minute=1,
        user_messages_per_minute=1,
        burst_messages=2,
    )
    with connect(server, "inbound", tls=False) as c:
        for _ in range(2):
            assert c.cmd("MAIL FROM:<sender@remote.test>").code == 250
            assert c.cmd("RSET").code == 250
        assert c.cmd("MAIL FROM:<sender@remote.test>").code == 451
    with login(server) as c:
        for _ in range(2):
            assert c.cmd(f"MAIL FROM:<{ALICE}>").code == 250
            assert c.cmd("RSET").code == 250
        assert_rate_limited(c.cmd(f"MAIL FROM:<{ALICE}>"), "messages")
    log = server.mail_log()
    assert f"messages rate limit for user:{ALICE}" in log


def timed(c: RawSMTP, line: str) -> tuple[int, float]:
    start = time.monotonic()
    reply = c.cmd(line)
    return reply.code, time.monotonic() - start


# A tarpit delay far beyond any scheduling hiccup of a loaded test machine: a reply
# that comes within the client's read timeout was not tarpitted.
LONG_TARPIT = 60.0
HELD_FOR = 1.0  # how long the test watches a tarpitted reply not arrive


def test_tarpit_spares_the_first_errors_and_good_commands(make_server):
    """tarpit_after=2: the first two errors and every good command are answered at
    once; the third error's reply is held (here: 60 s, so "at once" needs no
    wall-clock bound that a busy machine could break)."""
    server = make_server(
        extra=secure_extra(
            abuse={
                "tarpit_after": 2,
                "tarpit_delay": LONG_TARPIT,
                "tarpit_max_delay": LONG_TARPIT,
            }
        ),
    )
    with connect(server, "inbound", tls=False) as c:
        assert c.sock.gettimeout() < LONG_TARPIT
        assert c.cmd("XYZZY").code == 500
        assert c.cmd("NOOP").code == 250
        assert c.cmd("XYZZY").code == 500
        assert c.cmd("NOOP").code == 250
        c.send(b"XYZZY\r\n")
        c.sock.settimeout(HELD_FOR)
        with pytest.raises(TimeoutError):
            c.sock.recv(100)  # the third error's reply is held
    # The client left: the held reply's session ends at once (no 60 s sleep for nobody).
    assert wait_until(server.sessions_ended, 5), server.mail_log()


def test_tarpit_delay_grows_per_error_and_is_capped(make_server):
    """tarpit_after=1, tarpit_delay=0.5, cap 1.0: errors 2, 3, 4 wait at least 0.5,
    1.0 and 1.0 s.  Lower bounds cannot flake; the cap is shown against the 1.5 s the
    fourth error would wait uncapped."""
    server = make_server(
        extra=secure_extra(abuse={"tarpit_after": 1, "tarpit_delay": 0.5, "tarpit_max_delay": 1.0}),
    )
    with connect(server, "inbound", tls=False) as c:
        errors = [timed(c, "XYZZY") for _ in range(4)]
        assert [code for code, _ in errors] == [500] * 4
        _, second, third, fourth = (seconds for _, seconds in errors)
        assert second >= 0.5
        assert third >= 1.0
        assert 1.0 <= fourth < 1.5


def test_implicit_tls_handshakes_count_toward_the_per_ip_cap(make_server):
    """Regression: connections to the implicit-TLS port that never finish (or never
    start) the handshake count toward the connection caps; otherwise one IP could hold
    any number of them for the whole handshake timeout (60 s each).  The listener runs
    its own accept loop and counts a connection when it is accepted."""
    server = make_server(smtp={"max_connections_per_ip": 2}, extra=secure_extra())
    port = server.ports["submissions"]
    idle = [socket.create_connection((HOST, port), timeout=5) for _ in range(2)]
    try:
        reply = None
        deadline = time.monotonic() + 1
        while time.monotonic() < deadline:  # accepting is asynchronous: poll, bounded
            with RawSMTP(HOST, server.ports["inbound"]) as c:
                reply = c.reply()
            if reply.code == 421:
                break
            time.sleep(0.05)
        assert reply is not None and (reply.code, reply.enhanced) == (421, "4.7.0"), reply
        # A third client on the implicit-TLS port is closed without a handshake.
        with socket.create_connection((HOST, port), timeout=5) as third:
            third.settimeout(5)
            assert third.recv(100) == b""
    finally:
        for sock in idle:
            sock.close()
    # Once they are gone, TLS clients get in again.
    deadline = time.monotonic() + 5
    while True:
        try:
            with connect(server, "submissions") as c:
                assert c.cmd("NOOP").code == 250
            break
        except (OSError, AssertionError):
            assert time.monotonic() < deadline, "the closed connections were not released"
            time.sleep(0.05)
