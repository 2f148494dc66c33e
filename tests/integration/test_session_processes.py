"""Session processes (``smtp.processes = N``) against ``mailwright serve``.

With N > 0 the server process binds the listeners, accepts every connection, enforces
the connection caps alone and hands each connection (fd passing) to one of N child
processes, ``python -m mailwright.runtime.sessions <server pid> ...``, which run the SMTP
sessions, write the spool and the mail log and report queued ids back.  Covered here,
with two session processes unless a test says otherwise:

* concurrent clients' mail is stored, logged and delivered by the delivery worker;
  the server's children are exactly the announced session processes and the worker;
* the connection caps are exact across processes (421 4.7.0 over a cap, a silent close
  on an implicit-TLS listener) and a slot is freed when a session ends;
* a SIGKILLed session process is replaced, the server keeps greeting, the connections
  it held are released from the caps, and mail it acknowledged with 250 is delivered;
* STARTTLS and implicit TLS sessions (with AUTH) in session processes;
* an AUTH ban decided from failures seen by both processes holds in both; each process
  enforces 1/N of a rate limit;
* SIGTERM: a message in DATA is finished, the server exits 0 and leaves no process
  behind; SIGKILL of the server takes the session processes with it;
* ``smtp.processes = 0`` runs no session process; ``check-config`` refuses a value out
  of 0..256.

Which process holds a connection is read from /proc: the server's end of the TCP
connection (``/proc/net/tcp``) is a socket inode, looked up among ``/proc/<pid>/fd``.
Every wait is bounded by a constant below.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import smtplib
import socket
import struct
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from helpers.procs import alive, children_of, cmdline, wait_until
from helpers.secure import (
    ALICE,
    BOB,
    PASSWORD,
    WRONG_PASSWORD,
    b64,
    client_context,
    connect,
    plain_blob,
    secure_extra,
    write_users,
)
from helpers.servers import (
    EXAMPLE,
    HOST,
    READY_MARK,
    SubprocessServer,
    config_dict,
    in_maildir,
    to_toml,
)
from helpers.wire import CLIENT_NAME, RawSMTP, message, queue_id_of, smtplib_client
from mailwright.queue.runner import MAX_IDLE_SLEEP
from mailwright.smtp import codes

PROCESSES = 2
SENDER = "sender@remote.test"
SESSION_MODULE = b"mailwright.runtime.sessions"
WORKER_MODULE = b"mailwright.runtime.worker"
ANNOUNCE_RE = re.compile(r"^mailwright: session processes pids (\d+(?:, \d+)*)$", re.MULTILINE)
RECEIVED_TLS_RE = re.compile(rb"with (ESMTP\w*) \((TLSv1\.[23]) [A-Z0-9_-]+\) id ([0-9A-Z]{16})")

PROCESS_WAIT = 10.0  # a process appears in /proc or exits within this
RESTART_WAIT = 15.0  # a killed session process is replaced (1-2 s back-off + start-up)
RESET_CONNECTIONS = 50  # connections reset right after connect
FIRST_BACKOFF = 1.0  # the first restart of a session process waits this long
HANDOVER_WAIT = 5.0  # the server's end of a new connection reaches one session process
RELEASE_WAIT = 5.0  # an ended session frees its slot under the connection caps
GREETING_TIMEOUT = 10.0  # reads on a connection a just-restarted process may serve
LOG_WAIT = 10.0  # accepted/delivered lines reach the mail log
DELIVERY_WAIT = 15.0  # stored mail reaches the Maildir (the worker is woken per id)
# Mail acknowledged by a process killed right after its 250 is delivered at the latest
# by the worker's next periodic scan, should the wake-up have died with the process.
DELIVERY_AFTER_CRASH = MAX_IDLE_SLEEP + 10.0
STOP_TIMEOUT = 15.0  # SIGTERM to exit: shutdown_grace (3 s in the test config) + margin
BAN_WAIT = 10.0  # a ban goes process -> server -> every process over local sockets


# -- /proc -------------------------------------------------------------------------


def runs_module(pid: int, module: bytes) -> bool:
    return module in cmdline(pid)


def server_pid(server: SubprocessServer) -> int:
    assert server.proc is not None
    return server.proc.pid


def session_pids(server: SubprocessServer) -> set[int]:
    """The server's live children running ``mailwright.runtime.sessions``."""
    return {
        pid
        for pid in children_of(server_pid(server))
        if runs_module(pid, SESSION_MODULE) and alive(pid)
    }


def announced_session_pids(server: SubprocessServer) -> list[int]:
    found = ANNOUNCE_RE.findall(server.stdout())
    assert len(found) == 1, f"expected one announce line, got {found}:\n{server.stdout()}"
    return [int(pid) for pid in found[0].split(", ")]


def module_argument(pid: int, module: bytes) -> bytes | None:
    """The first argument after ``-m module`` in ``pid``'s command line, if it runs it."""
    args = cmdline(pid)
    return args[args.index(module) + 1] if module in args[:-1] else None


def mailwright_processes_of(server_id: int) -> list[int]:
    """Every live session process or delivery worker of the server ``server_id`` (both
    take the server's pid as first argument), wherever it may have been reparented."""
    wanted = str(server_id).encode()
    return [
        int(entry)
        for entry in os.listdir("/proc")
        if entry.isdigit()
        and alive(int(entry))
        and wanted in (module_argument(int(entry), m) for m in (SESSION_MODULE, WORKER_MODULE))
    ]


# -- which process holds a connection ----------------------------------------------


def _endpoint(field: str) -> tuple[str, int]:
    """``0100007F:0019`` (an IPv4 address as a host-order word, a port) from /proc/net/tcp."""
    address, port = field.split(":")
    return socket.inet_ntoa(struct.pack("=I", int(address, 16))), int(port, 16)


def server_end_inode(sock: socket.socket) -> int | None:
    """The socket inode of the server's end of the client connection ``sock``."""
    ours, theirs = sock.getsockname()[:2], sock.getpeername()[:2]
    with open("/proc/net/tcp") as table:
        next(table)
        for line in table:
            fields = line.split()
            if _endpoint(fields[1]) == theirs and _endpoint(fields[2]) == ours:
                return int(fields[9]) or None
    return None


def holders(server: SubprocessServer, sock: socket.socket) -> set[int]:
    """Pids among the server and its children with the server's end of ``sock`` open."""
    inode = server_end_inode(sock)
    if inode is None:
        return set()
    target = f"socket:[{inode}]"
    found = set()
    for pid in (server_pid(server), *children_of(server_pid(server))):
        with contextlib.suppress(OSError):
            for fd in os.listdir(f"/proc/{pid}/fd"):
                with contextlib.suppress(OSError):
                    if os.readlink(f"/proc/{pid}/fd/{fd}") == target:
                        found.add(pid)
                        break
    return found


def owner(server: SubprocessServer, sock: socket.socket) -> int:
    """The session process serving ``sock``: it alone holds the connection (the server
    closed its copy when it handed it over)."""
    seen: set[int] = set()

    def settled() -> bool:
        nonlocal seen
        seen = holders(server, sock)
        return len(seen) == 1 and seen <= session_pids(server)

    assert wait_until(settled, HANDOVER_WAIT), (
        f"the connection is held by {sorted(seen)}, not by exactly one session process "
        f"(server {server_pid(server)}, session processes {sorted(session_pids(server))})"
    )
    return next(iter(seen))


# -- clients -----------------------------------------------------------------------


def greeted(server: SubprocessServer, timeout: float = GREETING_TIMEOUT) -> RawSMTP:
    conn = RawSMTP(server.host, server.port, timeout=timeout)
    try:
        conn.greeting()
    except BaseException:
        conn.close()
        raise
    return conn


def greeted_once_released(server: SubprocessServer) -> RawSMTP:
    """A greeted connection, retrying while a just-ended session still counts."""
    deadline = time.monotonic() + RELEASE_WAIT
    while True:
        conn = RawSMTP(server.host, server.port, timeout=GREETING_TIMEOUT)
        reply = conn.reply()
        if reply.code == 220:
            return conn
        conn.close()
        assert time.monotonic() < deadline, f"no slot was freed: {reply}"
        time.sleep(0.05)


def assert_refused_over_cap(server: SubprocessServer) -> None:
    with RawSMTP(server.host, server.port) as conn:
        reply = conn.reply()
        assert (reply.code, reply.enhanced) == (421, "4.7.0"), reply
        assert conn.closed_by_peer()


def in_transaction(conn: RawSMTP) -> RawSMTP:
    """EHLO and MAIL: the session is no longer idle (stress mode will not close it)."""
    conn.ehlo()
    assert conn.cmd(f"MAIL FROM:<{SENDER}>").code == 250
    return conn


def quit_and_close(conn: RawSMTP) -> None:
    assert conn.cmd("QUIT").matches(codes.R221_BYE)
    assert conn.closed_by_peer()
    conn.close()


def send_raw(conn: RawSMTP, subject: str, box: str = "alice") -> str:
    """One message on a greeted connection (EHLO done); the queue id of the 250."""
    conn.send(f"MAIL FROM:<{SENDER}>\r\nRCPT TO:<{box}@{EXAMPLE}>\r\nDATA\r\n".encode())
    mail, rcpt, data = conn.replies(3)
    assert (mail.code, rcpt.code, data.code) == (250, 250, 354), (mail, rcpt, data)
    reply = conn.cmd(message(subject) + b"\r\n.")
    assert reply.code == 250, reply
    return queue_id_of(reply.text)


def wait_for_lines(server: SubprocessServer, lines: list[str]) -> str:
    """The mail log once it contains every one of ``lines``."""
    log = ""

    def complete() -> bool:
        nonlocal log
        log = server.mail_log()
        return all(line in log for line in lines)

    missing = [] if wait_until(complete, LOG_WAIT) else [x for x in lines if x not in log]
    assert missing == [], f"not in the mail log within {LOG_WAIT}s: {missing}\n{log}"
    return log


def on_every_process(
    server: SubprocessServer, opener: Callable[[], Any], limit: int = 8
) -> tuple[dict[int, Any], list[Any]]:
    """Open connections (kept open, so the server sees each process busy) until every
    session process serves one.  Returns ``{pid: connection}`` and all connections."""
    by_pid: dict[int, Any] = {}
    opened: list[Any] = []
    processes = session_pids(server)
    while set(by_pid) != processes:
        assert len(opened) < limit, (
            f"{limit} concurrent connections were all handed to {sorted(by_pid)} "
            f"of session processes {sorted(processes)}"
        )
        conn = opener()
        opened.append(conn)
        by_pid.setdefault(owner(server, conn.sock), conn)
    return by_pid, opened


def one_per_process(server: SubprocessServer, count: int) -> list[RawSMTP]:
    """``count`` greeted connections (all the per-IP cap allows), one in each session
    process.  Until a just-started process says it is ready the server hands every
    connection to the others, so this retries, bounded."""
    deadline = time.monotonic() + RESTART_WAIT
    while True:
        conns = [greeted_once_released(server) for _ in range(count)]
        served_by = {owner(server, conn.sock) for conn in conns}
        if served_by == session_pids(server):
            return conns
        for conn in conns:
            quit_and_close(conn)
        assert time.monotonic() < deadline, f"connections all went to {served_by}"
        time.sleep(0.2)


# -- servers -----------------------------------------------------------------------


@pytest.fixture
def start_server(tmp_path: Path) -> Iterator[Callable[..., SubprocessServer]]:
    """``make_subprocess_server`` with ``smtp.processes`` (2 unless given) and, with
    ``users=True``, alice and bob in ``users.json`` before the start.  At teardown the
    server is SIGKILLed; a child that outlived it is ended by its pid."""
    started: list[SubprocessServer] = []

    def start(
        *,
        processes: int = PROCESSES,
        smtp: dict[str, Any] | None = None,
        extra: dict[str, Any] | None = None,
        users: bool = False,
    ) -> SubprocessServer:
        workdir = tmp_path / f"proc{len(started)}"
        workdir.mkdir()
        server = SubprocessServer(
            workdir, smtp={"processes": processes, **(smtp or {})}, extra=extra
        )
        started.append(server)
        if users:
            server.data_dir.mkdir()
            write_users(server.data_dir)
        return server.start()

    yield start
    for server in started:
        proc = server.proc
        left = mailwright_processes_of(proc.pid) if proc is not None else []
        server.kill()
        if not wait_until(lambda left=left: not any(map(alive, left)), PROCESS_WAIT):
            for pid in left:
                if alive(pid):
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(pid, signal.SIGKILL)


# -- mail through session processes ------------------------------------------------

MESSAGES = 20
CLIENTS = 5


def test_concurrent_clients_are_served_by_the_session_processes(start_server):
    server = start_server()
    pid = server_pid(server)
    announced = announced_session_pids(server)
    assert len(announced) == PROCESSES
    out = server.stdout()
    assert out.index("mailwright: session processes pids") < out.index(READY_MARK)

    # The server's children: the announced session processes and the delivery worker.
    assert wait_until(lambda: session_pids(server) == set(announced), PROCESS_WAIT), (
        f"session processes {sorted(session_pids(server))}, announced {announced}"
    )
    children = children_of(pid)
    workers = [child for child in children if runs_module(child, WORKER_MODULE)]
    assert len(workers) == 1, [cmdline(child) for child in children]
    assert sorted(children) == sorted([*announced, *workers]), [cmdline(c) for c in children]
    for child in announced:  # python -m mailwright.runtime.sessions <server pid> ...
        assert module_argument(child, SESSION_MODULE) == str(pid).encode(), cmdline(child)

    def send_one(number: int) -> tuple[str, int]:
        with smtplib_client(HOST, server.port) as client:
            assert client.ehlo(CLIENT_NAME)[0] == 250
            served_by = owner(server, client.sock)
            assert client.mail(SENDER)[0] == 250
            assert client.rcpt(f"alice@{EXAMPLE}")[0] == 250
            code, reply = client.data(message(f"concurrent-{number}"))
        assert code == 250, reply
        return queue_id_of(reply), served_by

    with ThreadPoolExecutor(CLIENTS) as pool:
        results = list(pool.map(send_one, range(MESSAGES)))
    ids = [queue_id for queue_id, _ in results]
    assert len(set(ids)) == MESSAGES
    # The hand-over spreads concurrent sessions: both processes ran some.
    assert {served_by for _, served_by in results} == set(announced)

    delivered = server.maildir_messages(EXAMPLE, "alice", count=MESSAGES, timeout=DELIVERY_WAIT)
    assert len(delivered) == MESSAGES
    for queue_id in ids:
        assert sum(f" id {queue_id}".encode() in m for m in delivered) == 1, queue_id
    log = wait_for_lines(
        server,
        [f"{queue_id}: accepted from=<{SENDER}>" for queue_id in ids]
        + [f"{queue_id}: delivered to=<alice@{EXAMPLE}>" for queue_id in ids],
    )
    assert log.count(": accepted from=") == MESSAGES
    assert session_pids(server) == set(announced)  # nothing was restarted on the way


@pytest.mark.parametrize("cap", ["max_connections_per_ip", "max_connections"])
def test_connection_caps_are_exact_across_processes(start_server, cap):
    """The server alone counts: 3 sessions spread over both processes fill a cap of 3,
    the 4th gets 421 4.7.0 (an implicit-TLS client is closed without a word); a QUIT
    frees exactly one slot.  The 3 are inside a transaction: idle ones would be closed
    to make room (test_stress)."""
    limit = 3
    server = start_server(
        smtp={"max_connections": 50, "max_connections_per_ip": 50, cap: limit},
        extra=secure_extra(),
    )
    held = [in_transaction(greeted(server)) for _ in range(limit)]
    try:
        served_by = {owner(server, conn.sock) for conn in held}
        assert served_by == session_pids(server), "the sessions did not use both processes"
        assert_refused_over_cap(server)
        with socket.create_connection((HOST, server.ports["submissions"]), timeout=5) as tls:
            tls.settimeout(5)
            assert tls.recv(100) == b""
        quit_and_close(held.pop(0))
        held.append(in_transaction(greeted_once_released(server)))
        assert_refused_over_cap(server)  # one slot was freed, not more
    finally:
        for conn in held:
            conn.close()


def test_connections_reset_at_once_release_their_caps(start_server):
    """Regression (session processes): a connection counted by the server under the
    client's IP must be released under that IP, also when the client resets it before
    the session process starts the session (the transport can then no longer name
    the peer).  Otherwise every such reset leaks a slot, and a client can lock every
    other client out by connecting and resetting."""
    limit = 2
    server = start_server(smtp={"max_connections_per_ip": limit})
    linger_abort = struct.pack("ii", 1, 0)  # SO_LINGER on, 0 s: close() sends RST
    for _ in range(RESET_CONNECTIONS):
        sock = socket.create_connection((HOST, server.port), timeout=5)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, linger_abort)
        sock.close()
    held = [greeted_once_released(server) for _ in range(limit)]
    try:
        assert_refused_over_cap(server)
    finally:
        for conn in held:
            conn.close()


# -- a session process dies --------------------------------------------------------


def test_killed_session_process_is_replaced_and_releases_its_connections(start_server):
    server = start_server(smtp={"max_connections_per_ip": 2})
    first = session_pids(server)
    assert len(first) == PROCESSES
    victim = min(first)
    os.kill(victim, signal.SIGKILL)
    assert wait_until(lambda: not alive(victim), PROCESS_WAIT)
    died = time.monotonic()

    # The survivor serves while the victim waits for its restart.
    for _ in range(3):
        conn = greeted_once_released(server)
        conn.ehlo()
        assert owner(server, conn.sock) in first - {victim}
        quit_and_close(conn)

    assert wait_until(lambda: len(session_pids(server) - first) == 1, RESTART_WAIT), (
        f"no replacement for {victim}: {sorted(session_pids(server))}\n{server.stdout()}"
    )
    assert time.monotonic() - died >= FIRST_BACKOFF - 0.2, "restarted without a back-off"
    second = session_pids(server)
    assert len(second) == PROCESSES and victim not in second

    # Both processes hold a connection (the per-IP cap, 2, is full); kill both.
    held = one_per_process(server, 2)
    try:
        assert_refused_over_cap(server)
        for pid in second:
            os.kill(pid, signal.SIGKILL)
        for conn in held:
            assert conn.closed_by_peer(), "a killed process's client was not disconnected"
    finally:
        for conn in held:
            conn.close()
    assert wait_until(
        lambda: len(session_pids(server)) == PROCESSES and not session_pids(server) & second,
        RESTART_WAIT,
    ), f"session processes {sorted(session_pids(server))}\n{server.stdout()}"

    # The dead processes' connections no longer count: two new clients fill the cap.
    again = [greeted(server), greeted(server)]
    try:
        for conn in again:
            conn.ehlo()
        assert_refused_over_cap(server)
    finally:
        for conn in again:
            conn.close()
    assert server.proc is not None and server.proc.poll() is None


def test_mail_acknowledged_before_its_process_is_killed_is_delivered(start_server):
    server = start_server()
    with greeted(server) as conn:
        conn.ehlo()
        serving = owner(server, conn.sock)
        queue_id = send_raw(conn, "acknowledged-then-killed")
        os.kill(serving, signal.SIGKILL)  # right after the 250, before QUIT
        assert conn.closed_by_peer()
    delivered = server.message_with_id(EXAMPLE, "alice", queue_id, timeout=DELIVERY_AFTER_CRASH)
    assert b"Subject: acknowledged-then-killed" in delivered
    wait_for_lines(server, [f"{queue_id}: accepted from=", f"{queue_id}: delivered to="])
    assert len(server.message_files(EXAMPLE, "alice")) == 1


# -- TLS and AUTH ------------------------------------------------------------------


def submit(smtp: smtplib.SMTP, sender: str, rcpt: str, subject: str) -> str:
    assert smtp.mail(sender)[0] == 250
    assert smtp.rcpt(rcpt)[0] == 250
    code, reply = smtp.data(message(subject))
    assert code == 250, reply
    return queue_id_of(reply)


def test_starttls_and_implicit_tls_sessions_run_in_session_processes(start_server):
    server = start_server(extra=secure_extra(), users=True)
    sessions = session_pids(server)
    sent: dict[str, tuple[str, bytes]] = {}  # queue id -> (mailbox, ESMTP keyword)

    with smtplib.SMTP(HOST, server.ports["inbound"], CLIENT_NAME, timeout=10) as smtp:
        smtp.starttls(context=client_context())
        smtp.ehlo()
        assert owner(server, smtp.sock) in sessions
        sent[submit(smtp, SENDER, ALICE, "inbound starttls")] = ("alice", b"ESMTPS")

    with smtplib.SMTP(HOST, server.ports["submission"], CLIENT_NAME, timeout=10) as smtp:
        smtp.starttls(context=client_context())
        smtp.ehlo()
        assert owner(server, smtp.sock) in sessions
        smtp.login(ALICE, PASSWORD)
        sent[submit(smtp, ALICE, BOB, "submission starttls")] = ("bob", b"ESMTPSA")

    with smtplib.SMTP_SSL(
        HOST, server.ports["submissions"], CLIENT_NAME, timeout=10, context=client_context()
    ) as smtp:
        smtp.ehlo()
        assert owner(server, smtp.sock) in sessions
        smtp.login(ALICE, PASSWORD)
        sent[submit(smtp, ALICE, BOB, "implicit tls")] = ("bob", b"ESMTPSA")

    for queue_id, (box, keyword) in sent.items():
        delivered = server.message_with_id(EXAMPLE, box, queue_id, timeout=DELIVERY_WAIT)
        match = RECEIVED_TLS_RE.search(delivered)
        assert match, delivered[:400]
        assert (match.group(1), match.group(3).decode()) == (keyword, queue_id)


def test_auth_ban_holds_across_session_processes(start_server):
    """Three failures, spread over both processes (neither sees three itself), ban the
    IP in every process: AUTH answers 454 4.7.0 even with the right password."""
    server = start_server(
        extra=secure_extra(
            abuse={
                "auth_max_failures": 3,
                "auth_window": 60,
                "auth_ban_time": 60,
                "auth_base_delay": 0,
                "auth_max_delay": 0,
            }
        ),
        users=True,
    )
    by_pid, opened = on_every_process(server, lambda: connect(server, "submission"))
    try:
        first, second = (by_pid[pid] for pid in sorted(by_pid))
        third = next((c for c in opened if c not in (first, second)), None)
        if third is None:
            third = connect(server, "submission")
            opened.append(third)
        for conn in (first, second, third):
            reply = conn.sasl("PLAIN", ALICE, WRONG_PASSWORD)
            assert (reply.code, reply.enhanced) == (535, "5.7.8"), reply
    finally:
        for conn in opened:
            conn.close()
    # Poll (bounded) until every process refuses AUTH unchecked; a wrong password
    # asks without risking a success while the ban is still on its way.
    deadline = time.monotonic() + BAN_WAIT
    while True:
        by_pid, opened = on_every_process(server, lambda: connect(server, "submission"))
        try:
            replies = {
                pid: conn.sasl("PLAIN", ALICE, WRONG_PASSWORD) for pid, conn in by_pid.items()
            }
        finally:
            for conn in opened:
                conn.close()
        if all(reply.code == 454 for reply in replies.values()):
            break
        assert time.monotonic() < deadline, f"the ban did not reach every process: {replies}"

    by_pid, opened = on_every_process(server, lambda: connect(server, "submission"))
    try:
        for pid, conn in by_pid.items():
            reply = conn.cmd(f"AUTH PLAIN {b64(plain_blob(ALICE, PASSWORD))}")
            assert (reply.code, reply.enhanced) == (454, "4.7.0"), (pid, reply)
    finally:
        for conn in opened:
            conn.close()
    assert "AUTH from a banned IP" in server.mail_log()


def test_each_process_enforces_its_share_of_a_rate_limit(start_server):
    """ip_messages_per_minute 4, burst 4, two processes: 2 messages per process, so a
    client gets 4 in all, never the 8 two full buckets would allow."""
    server = start_server(
        extra={"abuse": {"tarpit_delay": 0, "ip_messages_per_minute": 4, "burst_messages": 4}}
    )

    def opener() -> RawSMTP:
        conn = greeted(server)
        conn.ehlo()
        return conn

    by_pid, opened = on_every_process(server, opener)
    try:
        for pid, conn in by_pid.items():
            answers = []
            for _ in range(3):
                answers.append(conn.cmd(f"MAIL FROM:<{SENDER}>"))
                assert conn.cmd("RSET").code == 250
            got = [(r.code, r.enhanced) for r in answers]
            assert got == [(250, "2.1.0"), (250, "2.1.0"), (451, "4.7.1")], (pid, answers)
    finally:
        for conn in opened:
            conn.close()


# -- stopping ----------------------------------------------------------------------


def test_sigterm_stops_the_server_and_every_child(start_server):
    server = start_server()
    pid = server_pid(server)
    children = children_of(pid)
    assert len(children) == PROCESSES + 1  # session processes and the worker
    with greeted(server) as idle:
        idle.ehlo()
        started = time.monotonic()
        assert server.terminate(timeout=STOP_TIMEOUT + 5) == 0, server.stderr()
        took = time.monotonic() - started
        assert took < STOP_TIMEOUT, f"SIGTERM took {took:.1f}s"
        # As in-process (app.py's staged shutdown): an idle session is told.
        assert idle.closed_by_peer(timeout=1)
        assert idle.reply().matches(codes.R421_SHUTTING_DOWN), idle.buf
    assert wait_until(lambda: not any(map(alive, children)), PROCESS_WAIT), [
        (child, cmdline(child)) for child in children if alive(child)
    ]
    assert mailwright_processes_of(pid) == []


def test_sigterm_lets_a_message_in_data_finish(start_server):
    server = start_server(smtp={"shutdown_grace": 5.0})
    assert server.proc is not None
    body = message("in-flight", b"first half\r\n" + b"second half\r\n")
    half = len(body) // 2
    with greeted(server) as conn:
        conn.ehlo()
        conn.send(f"MAIL FROM:<{SENDER}>\r\nRCPT TO:<alice@{EXAMPLE}>\r\nDATA\r\n".encode())
        assert conn.replies(3)[-1].matches(codes.R354_START_DATA)
        conn.send(body[:half])
        server.proc.send_signal(signal.SIGTERM)
        assert wait_until(lambda: not accepting(server), PROCESS_WAIT), "still accepting"
        conn.send(body[half:] + b".\r\n")
        done = conn.reply()
        assert done.code == 250, done
        queue_id = queue_id_of(done.text)
        assert conn.reply().matches(codes.R421_SHUTTING_DOWN)
        assert conn.closed_by_peer()
    assert server.proc.wait(STOP_TIMEOUT) == 0, server.stderr()
    # Delivered by this run, or from the spool by the next one.
    server.start()
    delivered = server.message_with_id(EXAMPLE, "alice", queue_id, timeout=DELIVERY_WAIT)
    assert delivered.endswith(in_maildir(body))


def accepting(server: SubprocessServer) -> bool:
    try:
        socket.create_connection((server.host, server.port), timeout=1).close()
    except OSError:
        return False
    return True


def test_session_processes_die_with_a_sigkilled_server(start_server):
    server = start_server()
    sessions = session_pids(server)
    assert len(sessions) == PROCESSES
    server.kill()
    assert wait_until(lambda: not any(map(alive, sessions)), PROCESS_WAIT), [
        (pid, cmdline(pid)) for pid in sessions if alive(pid)
    ]
    server.start()  # the spool and the ports are free for the next run
    with greeted(server) as conn:
        conn.ehlo()
        queue_id = send_raw(conn, "after restart")
    assert server.message_with_id(EXAMPLE, "alice", queue_id, timeout=DELIVERY_WAIT)


def test_zero_processes_serves_in_the_server(start_server):
    server = start_server(processes=0)
    assert ANNOUNCE_RE.search(server.stdout()) is None
    assert session_pids(server) == set()
    with greeted(server) as conn:
        conn.ehlo()
        assert holders(server, conn.sock) == {server_pid(server)}


# -- configuration -----------------------------------------------------------------


@pytest.mark.parametrize("value", [-1, 257])
def test_check_config_refuses_processes_out_of_range(tmp_path, value):
    path = tmp_path / "bad.toml"
    path.write_text(to_toml(config_dict(tmp_path / "data", smtp={"processes": value})), "utf-8")
    done = subprocess.run(
        [sys.executable, "-m", "mailwright", "check-config", str(path)],
        capture_output=True,
        text=True,
        timeout=30,
        stdin=subprocess.DEVNULL,
    )
    assert done.returncode == 2, done
    lines = done.stderr.splitlines()
    assert len(lines) == 1, lines
    assert lines[0].startswith(f"mailwright: {path}: smtp.processes: "), lines
