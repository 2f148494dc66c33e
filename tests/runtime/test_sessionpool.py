"""``SessionProcesses.hand_over`` with stand-in session processes: real SEQPACKET
socket pairs and real TCP connections on loopback, no child processes; and a start
whose process exits at once.

A batch of connections is spread over the ready processes by load, one datagram per
process whose lines match its descriptors in order; a process that cannot take its
batch (its end is gone) leaves it to the others; with no process ready every
connection comes back to the caller, which refuses it.
"""

from __future__ import annotations

import asyncio
import socket
import sys
from collections.abc import Iterator
from typing import Any

import pytest

from mailwright.config import parse_config
from mailwright.net.listener import ConnectionLimits
from mailwright.policy.authguard import AuthGuard
from mailwright.runtime.sessionpool import HandoverError, SessionProcesses

LISTENER_INDEX = 1
CONNECTIONS = 5
START_BOUND = 10.0  # seconds: far below sessionpool.START_TIMEOUT


class FakeProcess:
    pid = 0
    returncode = None


@pytest.fixture
def tcp_pairs() -> Iterator[list[tuple[socket.socket, socket.socket]]]:
    """CONNECTIONS accepted connections: (server side, client side)."""
    listener = socket.create_server(("127.0.0.1", 0))
    pairs = []
    try:
        for _ in range(CONNECTIONS):
            client = socket.create_connection(listener.getsockname(), timeout=5)
            server, _ = listener.accept()
            pairs.append((server, client))
        yield pairs
    finally:
        listener.close()
        for server, client in pairs:
            server.close()
            client.close()


def session_processes(count: int, command: list[str] | None = None) -> SessionProcesses:
    return SessionProcesses(
        parse_config({"smtp": {"processes": count}}),
        ConnectionLimits(100, 100),
        AuthGuard(max_failures=3, window=60, ban_time=60, base_delay=0, max_delay=0),
        on_queued=lambda queue_id: None,
        on_lost=lambda: None,
        command=command,
    )


def processes(count: int) -> tuple[SessionProcesses, list[socket.socket]]:
    """A SessionProcesses with ``count`` ready stand-ins; returns their far ends."""
    procs = session_processes(count)
    far_ends = []
    for slot in procs.children:
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        ours.setblocking(False)
        fake: Any = FakeProcess()
        slot.child.proc = fake
        slot.child.control = ours
        slot.ready = True
        far_ends.append(theirs)
    return procs, far_ends


def receive(end: socket.socket) -> tuple[list[bytes], list[socket.socket]]:
    end.settimeout(1)
    data, fds, _, _ = socket.recv_fds(end, 65536, 64)
    return data.split(b"\n"), [socket.socket(fileno=fd) for fd in fds]


def test_a_batch_is_spread_by_load_one_datagram_per_process(tcp_pairs):
    procs, (first, second) = processes(2)
    batch = [(server, "127.0.0.1") for server, _ in tcp_pairs]
    assert procs.hand_over(LISTENER_INDEX, batch) == []
    got = [receive(first), receive(second)]
    assert sorted(len(lines) for lines, _ in got) == [2, 3]
    clients = {client.getsockname(): client for _, client in tcp_pairs}
    for lines, socks in got:
        assert len(lines) == len(socks)
        assert all(line == b"c 1 127.0.0.1" for line in lines)
        for sock in socks:
            # Each descriptor is a connection of ours: what its client sends arrives.
            client = clients.pop(sock.getpeername())
            client.sendall(b"EHLO x\r\n")
            sock.settimeout(1)
            assert sock.recv(100) == b"EHLO x\r\n"
            sock.close()
    assert not clients
    assert sorted(c.active for c in procs.children) == [2, 3]
    assert all(server.fileno() == -1 for server, _ in tcp_pairs), "our copies stay open"


def test_a_process_that_cannot_take_its_batch_leaves_it_to_the_others(tcp_pairs):
    procs, (first, second) = processes(2)
    first.close()  # that process is gone: sending to it fails
    batch = [(server, "127.0.0.1") for server, _ in tcp_pairs]
    assert procs.hand_over(LISTENER_INDEX, batch) == []
    received = 0
    while received < CONNECTIONS:  # its own batch, then the one the other left
        lines, socks = receive(second)
        assert len(lines) == len(socks)
        received += len(socks)
        for sock in socks:
            sock.close()
    assert received == CONNECTIONS
    gone, alive = procs.children
    assert (gone.active, alive.active) == (0, CONNECTIONS)
    assert sum(alive.ips.values()) == CONNECTIONS and not gone.ips


def test_with_no_process_able_to_take_them_the_connections_come_back(tcp_pairs):
    procs, ends = processes(2)
    for end in ends:
        end.close()
    batch = [(server, "127.0.0.1") for server, _ in tcp_pairs]
    left = procs.hand_over(LISTENER_INDEX, batch)
    assert sorted(left, key=lambda pair: pair[0].fileno()) == batch
    assert all(server.fileno() >= 0 for server, _ in tcp_pairs), "the caller refuses them"
    assert all(c.active == 0 for c in procs.children)


def test_a_session_process_that_exits_while_starting_fails_the_start():
    """``serve`` then ends with one line (``cannot start: ...``), not a 30 s wait."""
    procs = session_processes(2, command=[sys.executable, "-c", "import sys; sys.exit(3)"])

    async def start() -> None:
        try:
            async with asyncio.timeout(START_BOUND):
                await procs.start()
        finally:
            await procs.stop(grace=0)

    with pytest.raises(HandoverError, match="exited with status 3 while starting"):
        asyncio.run(start())
