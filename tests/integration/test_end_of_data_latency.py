"""A message whose final ``.CRLF`` comes in the same write as the end of its body (as
smtplib, Postfix's smtp and swaks send it) is answered as fast as one whose dot comes
in a write of its own: the end of data found in the same read as body octets is
answered at once, not on some later wake-up.

A stall of the kind suspected here (delayed ACK, a timer, a missed wake-up) costs 40 to
several hundred milliseconds; an idle server answers in about a millisecond.  The
bound is an absolute one well under 100 ms, or a multiple of the split-write median
measured in the same test when a loaded machine makes every reply slower.  For the
split writes the test waits until the server has read and consumed the whole body
before it sends the dot, so the dot really arrives in a read of its own (the
in-process server would otherwise often read both writes at once, and a stall would
slow the reference too).  ``bench/data_latency.py`` measures the same on
``mailwright serve``.
"""

from __future__ import annotations

import fcntl
import socket
import statistics
import termios
import time

import pytest

from helpers.servers import InProcessServer
from helpers.wire import RawSMTP
from mailwright.net.inbound.session import InboundSession

ROUNDS = 20  # messages per size and write pattern
ABSOLUTE_BOUND = 0.030  # seconds: a median below this is no stall, whatever the load
RELATIVE_BOUND = 3.0  # or at most this many times the split-write median
LINE = b"x" * 74 + b"\r\n"
CONSUMED_TIMEOUT = 5.0  # seconds for the server to read a body we have sent
# What the DATA reader may keep unconsumed at the end of a body: the start of a
# terminator still arriving (smtp._data._HOLD_BACK).
HELD_BACK = len(b"\r\n.\r")


def _unread(sock: socket.socket, request: int) -> int:
    """Octets in a socket's kernel queue: TIOCOUTQ (= SIOCOUTQ) sent but not yet
    acknowledged, FIONREAD (= SIOCINQ) received but not yet read."""
    return int.from_bytes(fcntl.ioctl(sock.fileno(), request, b"\0\0\0\0"), "little")


def _wait_consumed(client: socket.socket, session: InboundSession) -> None:
    """Until the server has read everything we sent and handed it to the spool."""
    transport = session.transport
    assert transport is not None
    server_sock = transport.get_extra_info("socket")
    deadline = time.monotonic() + CONSUMED_TIMEOUT
    while time.monotonic() < deadline:
        if (
            _unread(client, termios.TIOCOUTQ) == 0
            and _unread(server_sock, termios.FIONREAD) == 0
            and session.conn.buffered <= HELD_BACK
        ):
            return
        time.sleep(0.0005)
    raise AssertionError("the server did not read the body")


def _body(size: int) -> bytes:
    head = b"From: <sender@remote.test>\r\nTo: <alice@example.test>\r\nSubject: t\r\n\r\n"
    return head + LINE * (size // len(LINE))


def _transaction(
    raw: RawSMTP, body: bytes, *, split: bool, session: InboundSession | None = None
) -> float:
    """One message; seconds from the write that carries the final dot to its 250."""
    assert raw.cmd("MAIL FROM:<sender@remote.test>").code == 250
    assert raw.cmd("RCPT TO:<alice@example.test>").code == 250
    assert raw.cmd("DATA").code == 354
    if split:
        raw.send(body)
        assert session is not None
        _wait_consumed(raw.sock, session)
        start = time.perf_counter()
        raw.send(b".\r\n")
    else:
        start = time.perf_counter()
        raw.send(body + b".\r\n")
    reply = raw.reply()
    elapsed = time.perf_counter() - start
    assert reply.code == 250, reply
    return elapsed


@pytest.mark.parametrize(
    "size",
    [
        1024,
        # More than MAX_PIPELINE_BUFFER (64 KiB): the session pauses reading while the
        # body streams in, and the dot comes with its last piece.
        100 * 1024,
    ],
)
def test_final_dot_in_the_body_write_is_answered_as_fast_as_a_separate_dot(
    server: InProcessServer, size: int
):
    body = _body(size)
    one: list[float] = []
    split: list[float] = []
    with RawSMTP(server.host, server.port) as raw:
        # No Nagle on our side: a held-back dot would be the client's delay, not ours.
        raw.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        raw.greeting()
        raw.ehlo()
        _transaction(raw, body, split=False)  # warm-up: first message costs more
        (session,) = server.app.listeners[0].sessions
        for _ in range(ROUNDS):
            one.append(_transaction(raw, body, split=False))
            split.append(_transaction(raw, body, split=True, session=session))
        assert raw.cmd("QUIT").code == 221
    one_median, split_median = statistics.median(one), statistics.median(split)
    bound = max(ABSOLUTE_BOUND, RELATIVE_BOUND * split_median)
    assert one_median < bound, (
        f"dot with the body: median {one_median * 1000:.1f} ms, "
        f"dot on its own: {split_median * 1000:.1f} ms (bound {bound * 1000:.1f} ms); "
        f"with the body: {sorted(round(x * 1000, 1) for x in one)}"
    )
