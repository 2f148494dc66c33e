"""Staged graceful shutdown (app.py): stop accepting, 421 4.3.2 to idle sessions, let a
message in DATA finish within ``shutdown_grace``, cancel the rest."""

from __future__ import annotations

import socket
import time

from helpers.servers import EXAMPLE, InProcessServer, in_maildir
from helpers.wire import RawSMTP, message, queue_id_of
from mailwright.smtp import codes

SENDER = "sender@remote.test"


def wait_until_not_accepting(server: InProcessServer, port: int, timeout: float = 5) -> None:
    """Stage 1 has happened once a new connection is refused."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            socket.create_connection((server.host, port), timeout=1).close()
        except OSError:
            return
        time.sleep(0.02)
    raise AssertionError("the server kept accepting connections during shutdown")


def test_idle_session_gets_421_on_shutdown(server: InProcessServer):
    with RawSMTP(server.host, server.port) as raw:
        raw.greeting()
        raw.ehlo()
        started = time.monotonic()
        stopper = server.stop_in_background()
        assert raw.reply().matches(codes.R421_SHUTTING_DOWN)
        assert raw.closed_by_peer()
        assert time.monotonic() - started < 2.0  # idle sessions do not wait for the grace
    stopper.join(10)
    assert not stopper.is_alive()


def test_session_in_data_finishes_its_message_during_the_grace_period(make_server):
    server = make_server(smtp={"shutdown_grace": 5.0})
    port = server.port
    body = message("in-flight", b"first half\r\n" + b"second half\r\n")
    half = len(body) // 2
    with RawSMTP(server.host, port) as raw:
        raw.greeting()
        raw.ehlo()
        raw.send(f"MAIL FROM:<{SENDER}>\r\nRCPT TO:<alice@example.test>\r\nDATA\r\n".encode())
        assert raw.replies(3)[-1].matches(codes.R354_START_DATA)
        raw.send(body[:half])
        stopper = server.stop_in_background()
        wait_until_not_accepting(server, port)
        raw.send(body[half:] + b".\r\n")
        done = raw.reply()
        assert done.code == 250, done
        queue_id = queue_id_of(done.text)
        # Then the session is idle, so it is told the server is going away.
        assert raw.reply().matches(codes.R421_SHUTTING_DOWN)
        assert raw.closed_by_peer()
    stopper.join(15)
    assert not stopper.is_alive()
    # The 250'd message is delivered: by this run if the queue runner got to it before
    # stopping, otherwise it waits durably in the spool for the next start.
    restarted = InProcessServer(server.config).start()
    try:
        [delivered] = restarted.maildir_messages(EXAMPLE, "alice")
        assert delivered.endswith(in_maildir(body)) and f"id {queue_id}".encode() in delivered
        # Delivered and out of the queue: no second copy can follow.
        restarted.wait_queue_empty()
        assert len(restarted.message_files(EXAMPLE, "alice")) == 1
    finally:
        restarted.stop()


def test_session_still_in_data_after_the_grace_is_cut_off_and_nothing_stored(make_server):
    server = make_server(smtp={"shutdown_grace": 0.5})
    with RawSMTP(server.host, server.port) as raw:
        raw.greeting()
        raw.ehlo()
        raw.send(f"MAIL FROM:<{SENDER}>\r\nRCPT TO:<alice@example.test>\r\nDATA\r\n".encode())
        assert raw.replies(3)[-1].matches(codes.R354_START_DATA)
        raw.send(b"Subject: never finished\r\n\r\nhalf")
        started = time.monotonic()
        stopper = server.stop_in_background()
        assert raw.reply().matches(codes.R421_SHUTTING_DOWN)
        assert 0.4 <= time.monotonic() - started < 4.0
        assert raw.closed_by_peer()
    stopper.join(15)
    assert not stopper.is_alive()
    server.assert_nothing_stored()
