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


def test_tarpit_delays_repeated_errors(make_server):
    """tarpit_after=1, tarpit_delay=0.2, cap 0.3: the first error is answered at once,
    each later one is delayed 0.2 * (errors so far), capped; good commands never."""
    server = make_server(
        extra=secure_extra(abuse={"tarpit_after": 1, "tarpit_delay": 0.2, "tarpit_max_delay": 0.3}),
    )
    with connect(server, "inbound", tls=False) as c:
        errors = [timed(c, "XYZZY") for _ in range(4)]
        assert [code for code, _ in errors] == [500] * 4
        first, second, third, fourth = (seconds for _, seconds in errors)
        assert first < 0.15
        assert second >= 0.18
        assert third >= 0.28 and third > first + 0.15  # the 3rd takes measurably longer
        assert fourth >= 0.28 and fourth < 0.3 + 0.5  # capped at tarpit_max_delay
        code, seconds = timed(c, "NOOP")
        assert code == 250 and seconds < 0.15


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
