"""Stopping the queue runner closes the relay's idle pooled sessions with QUIT (RFC 5321
§4.1.1.10) instead of leaving them to the idle timer or to the process's exit (a reset
the peer logs as a lost connection).

The peer is a scripted asyncio SMTP server that records every command; the relay is
the one the composition root builds (``RelayHarness``), its MX found through a
``LoopbackDns``.
"""

from __future__ import annotations

import asyncio
import smtplib
import socketserver
import threading
from collections.abc import Iterator

import pytest

from helpers.dnsserver import LoopbackDns, MakeDns
from helpers.outbound import read_until, scripted_server
from helpers.procs import wait_until
from helpers.relaykit import RelayHarness, relay_config, run
from helpers.servers import HOST
from helpers.wire import message
from mailwright.delivery.relay.pool import IDLE_CACHE_TIME

ZONE = """
$ORIGIN test.
$TTL 300
@ IN SOA ns.test. hostmaster.test. 1 3600 600 86400 60
far          IN MX 10 mx.far
mx.far       IN A 127.0.0.1
"""


PEER_TIMEOUT = 10.0  # s a peer connection waits for the next command


@pytest.fixture
def dns(loopback_dns: MakeDns) -> LoopbackDns:
    return loopback_dns(ZONE)


class RecordingPeer:
    """Says 250 to a whole transaction and 221 to QUIT; ``commands`` holds the verbs
    in the order they came, ``"EOF"`` when the client closed without QUIT."""

    def __init__(self) -> None:
        self.commands: list[str] = []

    async def __call__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"220 mx.far.test ESMTP\r\n")
        await writer.drain()
        while True:
            try:
                line = await reader.readuntil(b"\r\n")
            except asyncio.IncompleteReadError:
                self.commands.append("EOF")
                return
            verb = line.split(b" ", 1)[0].strip().upper().decode()
            self.commands.append(verb)
            if verb == "EHLO":
                writer.write(b"250-mx.far.test\r\n250 PIPELINING\r\n")
            elif verb == "DATA":
                writer.write(b"354 go ahead\r\n")
                await writer.drain()
                await read_until(reader, b"\r\n.\r\n")
                writer.write(b"250 2.0.0 queued\r\n")
            elif verb == "QUIT":
                writer.write(b"221 2.0.0 bye\r\n")
                await writer.drain()
                return
            else:
                writer.write(b"250 2.0.0 ok\r\n")
            await writer.drain()


def test_runner_stop_quits_idle_relay_sessions(tmp_path, dns: LoopbackDns) -> None:
    peer = RecordingPeer()

    async def main() -> None:
        async with scripted_server(peer) as port:
            harness = RelayHarness(dns, relay_config(tmp_path, dns, port))
            try:
                await harness.put("someone@far.test")
                assert await harness.run_once() == 1
                assert await harness.queued() == []  # delivered, the session now idle
                assert peer.commands[-1] == "DATA" and "QUIT" not in peer.commands
                started = asyncio.get_running_loop().time()
                await harness.runner.stop()
                # stop() waited for the 221: the peer has the QUIT already, long before
                # the idle timer would have sent one.
                assert peer.commands[-1] == "QUIT", peer.commands
                assert asyncio.get_running_loop().time() - started < IDLE_CACHE_TIME
            finally:
                await harness.close()

    run(main())
    assert peer.commands == ["EHLO", "MAIL", "RCPT", "DATA", "QUIT"]


class _PeerHandler(socketserver.StreamRequestHandler):
    """The same dialogue as ``RecordingPeer``, for a peer in a thread (the relaying
    server is another process): commands go to ``server.commands``."""

    timeout = PEER_TIMEOUT
    server: _ThreadedPeer

    def reply(self, text: bytes) -> None:
        self.wfile.write(text)
        self.wfile.flush()

    def handle(self) -> None:
        self.reply(b"220 mx.far.test ESMTP\r\n")
        while True:
            line = self.rfile.readline()
            if not line:
                self.server.record("EOF")
                return
            verb = line.split(b" ", 1)[0].strip().upper().decode()
            self.server.record(verb)
            if verb == "EHLO":
                self.reply(b"250-mx.far.test\r\n250 PIPELINING\r\n")
            elif verb == "DATA":
                self.reply(b"354 go ahead\r\n")
                while self.rfile.readline() not in (b".\r\n", b""):
                    pass
                self.reply(b"250 2.0.0 queued\r\n")
            elif verb == "QUIT":
                self.reply(b"221 2.0.0 bye\r\n")
                return
            else:
                self.reply(b"250 2.0.0 ok\r\n")


class _ThreadedPeer(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self) -> None:
        super().__init__((HOST, 0), _PeerHandler)
        self.commands: list[str] = []
        self.lock = threading.Lock()

    def record(self, verb: str) -> None:
        with self.lock:
            self.commands.append(verb)


@pytest.fixture
def threaded_peer() -> Iterator[_ThreadedPeer]:
    peer = _ThreadedPeer()
    thread = threading.Thread(target=peer.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    try:
        yield peer
    finally:
        peer.shutdown()
        peer.server_close()
        thread.join(10)


def test_server_stop_quits_the_workers_idle_relay_session(
    make_subprocess_server, dns: LoopbackDns, threaded_peer: _ThreadedPeer
) -> None:
    """``mailwright serve`` with its delivery worker: SIGTERM right after a relayed
    delivery; the worker's runner stop sends QUIT on the idle session before exit."""
    server = make_subprocess_server(
        extra={
            "relay": {"trusted_networks": ["127.0.0.1/32"]},
            "dns": {"nameservers": [dns.nameserver]},
            "outbound": {"port": threaded_peer.server_address[1], "allow_private_addresses": True},
        }
    )
    with smtplib.SMTP(HOST, server.port, local_hostname="client.test", timeout=10) as client:
        assert client.sendmail("alice@example.test", ["someone@far.test"], message("q")) == {}
    assert wait_until(lambda: ": delivered to=<someone@far.test>" in server.mail_log(), 30)
    assert server.terminate() == 0
    assert wait_until(lambda: threaded_peer.commands[-1:] in (["QUIT"], ["EOF"]), 10)
    assert threaded_peer.commands == ["EHLO", "MAIL", "RCPT", "DATA", "QUIT"]
