"""Connection slots and deadlines over real sockets (issue 8, items 12, 16 and 5):

* deadlines per command and per DATA/BDAT block, not per byte: a drip inside a command
  line or a body is cut off, a body sent at the minimum data rate is not;
* idle sessions (no MAIL yet) wait less than a transaction;
* stress mode: shorter timeouts near the cap, and at the cap the oldest idle session
  makes room for a new client instead of everyone getting 421;
* a peer that pipelined junk and left is dropped at once, not worked through;
* a client that talks before the greeting is served unless a greeting delay is set;
* the open-file limit is raised for ``max_connections`` at start-up, or a warning says why not.

Every wait is bounded; timeouts are configured small so the tests run in seconds.
"""

from __future__ import annotations

import select
import socket
import time
from pathlib import Path
from typing import Any

import pytest

from helpers.procs import wait_until
from helpers.servers import EXAMPLE, HOST, SubprocessServer, in_maildir
from helpers.wire import READ_TIMEOUT, RawSMTP, message
from mailwright.runtime.fdlimit import fds_needed
from mailwright.smtp import codes

SENDER = "sender@remote.test"
# The drip: one byte per interval, for at most DRIP_FOR seconds.
DRIP_INTERVAL = 0.1
DRIP_FOR = 6.0
# A 1 s deadline must end the session well before the drip would (the watchdog looks
# four times per timeout; the rest is slack for a loaded machine).
CUT_OFF_WITHIN = 3.0
# 20 client addresses, as in the report (127.0.40.1-20), two idle sessions each.
STRESS_ADDRESSES = [f"127.0.40.{i}" for i in range(1, 21)]
STRESS_CAP = 2 * len(STRESS_ADDRESSES)
# A peer that closed must be gone from the server within this.
PEER_GONE_WITHIN = 2.0
HOSTILE_CLIENTS = 5
JUNK_COMMANDS = 50


class RawFrom(RawSMTP):
    """``RawSMTP`` from a chosen loopback source address."""

    def __init__(self, host: str, port: int, source: str) -> None:
        self.sock = socket.create_connection(
            (host, port), timeout=READ_TIMEOUT, source_address=(source, 0)
        )
        self.buf = b""


def drip_until_reply(raw: RawSMTP, data: bytes) -> tuple[bytes, float]:
    """Send ``data`` one byte per DRIP_INTERVAL (cycling) until the server answers or
    closes; (what it sent, seconds it took).  The drip never stops before that, so a
    server that restarts its timeout per byte keeps the session open to DRIP_FOR."""
    started = time.monotonic()
    i = 0
    while time.monotonic() - started < DRIP_FOR:
        try:
            raw.send(data[i % len(data) : i % len(data) + 1])
        except OSError:
            break
        i += 1
        ready, _, _ = select.select([raw.sock], [], [], DRIP_INTERVAL)
        if ready:
            break
    raw.closed_by_peer(timeout=1.0)  # read what there is
    return raw.buf, time.monotonic() - started


def start_transaction(raw: RawSMTP) -> None:
    raw.ehlo()
    raw.send(f"MAIL FROM:<{SENDER}>\r\nRCPT TO:<alice@{EXAMPLE}>\r\n".encode())
    assert [r.code for r in raw.replies(2)] == [250, 250]


# -- deadlines (item 12) ---------------------------------------------------------------


@pytest.mark.parametrize("processes", [0, 2])
def test_a_drip_inside_data_is_cut_off_at_the_deadline(
    make_server, make_subprocess_server, processes
):
    smtp = {"data_block_timeout": 1.0, "command_timeout": 5.0, "processes": processes}
    server = make_subprocess_server(smtp=smtp) if processes else make_server(smtp=smtp)
    with RawSMTP(server.host, server.port) as raw:
        raw.greeting()
        start_transaction(raw)
        assert raw.cmd("DATA").matches(codes.R354_START_DATA)
        raw.send(b"Subject: drip\r\n\r\n")
        answer, took = drip_until_reply(raw, b"x")
        assert answer == codes.R421_TIMEOUT.to_bytes(), (answer, took)
        assert took < CUT_OFF_WITHIN
    server.assert_nothing_stored()


@pytest.mark.parametrize("processes", [0, 2])
def test_a_drip_inside_a_command_line_is_cut_off_at_the_deadline(
    make_server, make_subprocess_server, processes
):
    smtp = {"command_timeout": 1.0, "processes": processes}
    server = make_subprocess_server(smtp=smtp) if processes else make_server(smtp=smtp)
    with RawSMTP(server.host, server.port) as raw:
        raw.greeting()
        raw.ehlo()
        answer, took = drip_until_reply(raw, f"MAIL FROM:<{SENDER}>".encode())
        assert answer == codes.R421_TIMEOUT.to_bytes(), (answer, took)
        assert took < CUT_OFF_WITHIN


def test_a_body_sent_at_the_minimum_data_rate_outlasts_the_block_timeout(make_server):
    """The DATA deadline grows with the bytes received (smtp.min_data_rate): 3 s of
    body at 4 times the minimum rate is taken whole under a 1 s data block timeout."""
    rate = 1000
    server = make_server(smtp={"data_block_timeout": 1.0, "min_data_rate": rate / 4})
    piece = b"y" * (rate // 5 - 2) + b"\r\n"
    with RawSMTP(server.host, server.port) as raw:
        raw.greeting()
        start_transaction(raw)
        assert raw.cmd("DATA").matches(codes.R354_START_DATA)
        raw.send(b"Subject: steady\r\n\r\n")
        for _ in range(15):  # 15 * 0.2 s = 3 s at `rate` octets per second
            time.sleep(0.2)
            raw.send(piece)
        reply = raw.cmd(b".")
        assert reply.code == 250, reply
    [delivered] = server.maildir_messages(EXAMPLE, "alice")
    assert delivered.endswith(in_maildir(piece * 15))


def test_an_idle_session_times_out_before_a_transaction_does(make_server):
    server = make_server(smtp={"idle_timeout": 0.5, "command_timeout": 5.0})
    with RawSMTP(server.host, server.port) as raw:
        raw.greeting()
        start_transaction(raw)
        time.sleep(1.0)  # twice the idle timeout: a transaction has its command timeout
        assert raw.cmd("RSET").code == 250
        started = time.monotonic()
        assert raw.reply().matches(codes.R421_TIMEOUT)  # idle again after RSET
        assert 0.4 <= time.monotonic() - started < CUT_OFF_WITHIN


# -- stress mode (item 12) -------------------------------------------------------------


def fill_with_idle_sessions(server: Any) -> list[RawSMTP]:
    """STRESS_CAP sessions from 127.0.40.1-20, oldest first; the oldest is inside a
    transaction, all others idle after EHLO."""
    held: list[RawSMTP] = []
    try:
        for source in STRESS_ADDRESSES:
            for _ in range(2):
                raw = RawFrom(server.host, server.port, source)
                held.append(raw)
                raw.greeting()
                if len(held) == 1:
                    start_transaction(raw)
                else:
                    raw.ehlo()
    except BaseException:
        for raw in held:
            raw.close()
        raise
    return held


def unsolicited(raw: RawSMTP, timeout: float) -> bytes:
    """What the server sent on a quiet connection within ``timeout`` seconds."""
    if select.select([raw.sock], [], [], timeout)[0]:
        raw.closed_by_peer(timeout=1.0)
    return raw.buf


@pytest.mark.parametrize("processes", [0, 2])
def test_idle_sessions_make_room_for_a_new_client_at_the_cap(
    make_server, make_subprocess_server, processes
):
    """The report at a small scale: idle sessions from 20 addresses fill
    max_connections; a new client from another address is still greeted and delivers,
    because the oldest idle session (not the older one inside a transaction) is closed
    with 421 4.7.0 to make room."""
    smtp = {"max_connections": STRESS_CAP, "processes": processes}
    server = make_subprocess_server(smtp=smtp) if processes else make_server(smtp=smtp)
    held = fill_with_idle_sessions(server)
    try:
        with RawSMTP(server.host, server.port) as newcomer:
            greeting = newcomer.reply()
            assert greeting.code == 220, greeting
            start_transaction(newcomer)
            assert newcomer.cmd("DATA").matches(codes.R354_START_DATA)
            reply = newcomer.cmd(message("made room") + b"\r\n.")
            assert reply.code == 250, reply
            assert newcomer.cmd("QUIT").matches(codes.R221_BYE)
        closed = [i for i, raw in enumerate(held) if unsolicited(raw, 0.2)]
        assert len(closed) == 1, [held[i].buf for i in closed]
        assert held[closed[0]].buf == codes.R421_MAKING_ROOM.to_bytes()
        assert held[closed[0]].closed_by_peer()
        if not processes:  # one process: exactly the oldest idle one
            assert closed == [1]
        assert closed != [0]  # never the session inside a transaction
        assert held[0].cmd("RSET").code == 250
    finally:
        for raw in held:
            raw.close()
    assert len(server.maildir_messages(EXAMPLE, "alice")) == 1


@pytest.mark.parametrize("processes", [0, 2])
def test_stress_mode_shortens_timeouts_and_the_error_limit(
    make_server, make_subprocess_server, processes
):
    """At 80 % of max_connections the stress timeout applies, also to a session that
    began waiting before; and the second error closes the session (Postfix's stress
    smtpd_timeout and smtpd_hard_error_limit).  With session processes the main
    process counts and tells them."""
    smtp = {
        "max_connections": 5,
        "stress_timeout": 0.5,
        "command_timeout": 30.0,
        "processes": processes,
    }
    server = make_subprocess_server(smtp=smtp) if processes else make_server(smtp=smtp)
    first = RawSMTP(server.host, server.port)
    others: list[RawSMTP] = []
    try:
        first.greeting()
        first.ehlo()
        time.sleep(1.0)  # twice the stress timeout, but not under stress: still open
        assert first.cmd("NOOP").code == 250
        for _ in range(4):  # 5 of 5: stress mode (from 4), and still after one closes
            others.append(RawSMTP(server.host, server.port))
            others[-1].greeting()
        started = time.monotonic()
        erring = others[-1]
        assert erring.cmd("FOO").matches(codes.R500_UNRECOGNIZED)
        assert erring.cmd("BAR").matches(codes.R421_TOO_MANY_ERRORS)
        assert erring.closed_by_peer()
        assert first.reply().matches(codes.R421_TIMEOUT)
        assert time.monotonic() - started < CUT_OFF_WITHIN
    finally:
        first.close()
        for raw in others:
            raw.close()


# -- a peer that has gone (item 16) ------------------------------------------------------


@pytest.mark.parametrize("half_close", [False, True], ids=["close", "half-close"])
@pytest.mark.parametrize("processes", [0, 2])
def test_a_peer_that_pipelined_junk_and_left_is_dropped_at_once(
    make_subprocess_server, processes, half_close
):
    """With the tarpit on, sessions whose clients pipelined 50 bad commands and closed
    (or half-closed) end at once (no error delays for nobody), and SIGTERM right after
    is fast."""
    server = make_subprocess_server(
        smtp={"processes": processes}, extra={"abuse": {"tarpit_delay": 1.0}}
    )
    for _ in range(HOSTILE_CLIENTS):
        with RawSMTP(server.host, server.port) as raw:
            raw.greeting()
            raw.send(b"JUNK\r\n" * JUNK_COMMANDS)
            if half_close:
                raw.sock.shutdown(socket.SHUT_WR)
    closed = time.monotonic()

    def all_gone() -> bool:
        return server.mail_log().count(" disconnect client=") >= HOSTILE_CLIENTS

    assert wait_until(all_gone, PEER_GONE_WITHIN), (
        f"sessions still open {PEER_GONE_WITHIN} s after their clients left:\n" + server.mail_log()
    )
    assert time.monotonic() - closed < PEER_GONE_WITHIN
    started = time.monotonic()
    assert server.terminate() == 0
    assert time.monotonic() - started < 2.0


def test_a_message_pipelined_before_a_half_close_still_gets_its_250(make_server):
    """A peer that closed its side still reads: what it sent before the EOF is answered
    to the end, the message stored and acknowledged, the QUIT answered."""
    server = make_server()
    body = message("half-close")
    with RawSMTP(server.host, server.port) as raw:
        raw.greeting()
        raw.ehlo()
        raw.send(
            f"MAIL FROM:<{SENDER}>\r\nRCPT TO:<alice@{EXAMPLE}>\r\nDATA\r\n".encode()
            + body
            + b".\r\nQUIT\r\n"
        )
        raw.sock.shutdown(socket.SHUT_WR)
        assert raw.closed_by_peer()
    last_lines = [line for line in raw.buf.split(b"\r\n") if line[3:4] == b" "]
    assert [int(line[:3]) for line in last_lines] == [250, 250, 354, 250, 221], raw.buf
    [delivered] = server.maildir_messages(EXAMPLE, "alice")
    assert delivered.endswith(in_maildir(body))


# -- early talkers (item 5) ------------------------------------------------------------


@pytest.mark.parametrize("half_close", [False, True], ids=["nc", "nc-N"])
@pytest.mark.parametrize("processes", [0, 2])
def test_a_dialog_sent_before_the_greeting_is_served_without_a_greeting_delay(
    make_subprocess_server, processes, half_close
):
    """``printf 'EHLO x\\r\\nMAIL FROM:...' | nc``: the whole dialog in one write, before
    the 220, is answered in turn and the message delivered (smtp.greeting_delay is 0);
    also when the client then closes its side at once (``nc -N``, ncat)."""
    server = make_subprocess_server(smtp={"processes": processes})
    body = message("pregreet")
    dialog = (
        f"EHLO client.test\r\nMAIL FROM:<{SENDER}>\r\nRCPT TO:<alice@{EXAMPLE}>\r\n"
        "DATA\r\n".encode()
        + body
        + b".\r\nQUIT\r\n"
    )
    with socket.create_connection((HOST, server.port), timeout=READ_TIMEOUT) as sock:
        sock.sendall(dialog)  # at once: before the greeting can have arrived
        if half_close:
            sock.shutdown(socket.SHUT_WR)
        raw = RawSMTP.__new__(RawSMTP)
        raw.sock, raw.buf = sock, b""
        assert raw.closed_by_peer()  # after the 221: everything was answered
    last_lines = [line for line in raw.buf.split(b"\r\n") if line[3:4] == b" "]
    assert [int(line[:3]) for line in last_lines] == [220, 250, 250, 250, 354, 250, 221], raw.buf
    [delivered] = server.maildir_messages(EXAMPLE, "alice")
    assert delivered.endswith(in_maildir(body))


# -- the open-file limit (item 12) -------------------------------------------------------


class LimitedServer(SubprocessServer):
    """``mailwright serve`` started under ``prlimit --nofile=SOFT:HARD``."""

    def __init__(self, workdir: Path, nofile: str) -> None:
        super().__init__(workdir)
        self.nofile = nofile

    def command(self) -> list[str]:
        return ["prlimit", f"--nofile={self.nofile}", "--", *super().command()]


def open_file_limits(pid: int) -> tuple[int, int]:
    """(soft, hard) "Max open files" of a process, from /proc/<pid>/limits."""
    for line in Path(f"/proc/{pid}/limits").read_text().splitlines():
        if line.startswith("Max open files"):
            soft, hard = line.split()[3:5]
            return int(soft), int(hard)
    raise AssertionError("no Max open files line")


@pytest.fixture
def limited_server(tmp_path: Path):
    started: list[LimitedServer] = []

    def start(nofile: str) -> LimitedServer:
        workdir = tmp_path / f"limited{len(started)}"
        workdir.mkdir()
        server = LimitedServer(workdir, nofile)
        started.append(server)
        return server.start()

    yield start
    for server in started:
        server.kill()


def test_a_low_open_file_limit_is_raised_at_start_up(limited_server):
    needed = fds_needed(1000)  # smtp.max_connections' default
    server = limited_server(f"256:{needed + 100}")
    assert server.proc is not None
    assert open_file_limits(server.proc.pid) == (needed, needed + 100)
    assert "open file limit" not in server.stderr()


def test_an_open_file_limit_that_cannot_be_raised_enough_is_warned_about(limited_server):
    server = limited_server("256:512")
    assert server.proc is not None
    assert open_file_limits(server.proc.pid) == (512, 512)  # raised as far as it goes
    warning = (
        f"open file limit is 512 (hard limit 512), below the {fds_needed(1000)} that "
        "smtp.max_connections = 1000 needs"
    )
    assert wait_until(lambda: warning in server.stderr(), 5.0), server.stderr()
    assert server.proc.poll() is None  # a warning, not a refusal to start
