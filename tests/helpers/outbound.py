"""Helpers for the outbound session tests (tests/net/outbound): short timeouts, message
builders, a scripted asyncio SMTP peer, and Postfix's ``smtp-sink`` as a subprocess."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

from helpers.tools import require_tool
from mailwright.net.outbound import (
    ClientSettings,
    ClientTimeouts,
    OutgoingMessage,
    OutgoingRecipient,
    Peer,
)
from mailwright.spool.model import BodyType

T = TypeVar("T")

HOST = "127.0.0.1"
CLIENT_NAME = "client.example.test"
RUN_TIMEOUT = 30.0  # no test coroutine may take longer than this
# Shrunk RFC 5321 §4.5.3.2 timeouts: a broken peer fails a test in seconds.
FAST = ClientTimeouts(
    connect=5,
    greeting=5,
    command=5,
    mail=5,
    rcpt=5,
    data_init=5,
    data_block=5,
    data_end=5,
    rset=5,
    quit=5,
    tls_handshake=5,
)
SINK_START_TIMEOUT = 10.0
SINK_USER = "nobody"  # the user smtp-sink drops to when the tests run as root


def run(coro: Awaitable[T], timeout: float = RUN_TIMEOUT) -> T:
    async def bounded() -> T:
        async with asyncio.timeout(timeout):
            return await coro

    return asyncio.run(bounded())


def settings(**kwargs: Any) -> ClientSettings:
    return ClientSettings(helo_name=CLIENT_NAME, timeouts=kwargs.pop("timeouts", FAST), **kwargs)


def body(subject: str = "outbound test", text: bytes = b"Hello.\r\n", extra: bytes = b"") -> bytes:
    return (
        b"From: alice@example.test\r\nTo: bob@example.test\r\n"
        + b"Subject: "
        + subject.encode()
        + b"\r\nMessage-ID: <"
        + subject.replace(" ", ".").encode()
        + b"@client.example.test>\r\n"
        + extra
        + b"\r\n"
        + text
    )


def message(
    *recipients: str | OutgoingRecipient,
    mail_from: str = "alice@example.test",
    data: bytes | None = None,
    **kwargs: Any,
) -> OutgoingMessage:
    rcpts = tuple(
        r if isinstance(r, OutgoingRecipient) else OutgoingRecipient(r) for r in recipients
    )
    return OutgoingMessage(
        mail_from,
        rcpts,
        body() if data is None else data,
        kwargs.pop("body_type", BodyType.SEVEN_BIT),
        **kwargs,
    )


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


# -- a scripted peer -----------------------------------------------------------------

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


@contextlib.asynccontextmanager
async def scripted_server(handler: Handler) -> AsyncIterator[int]:
    """An asyncio server on 127.0.0.1 running ``handler`` per connection; yields the
    port.  Handlers' exceptions surface at exit (a test cannot pass over them)."""
    errors: list[BaseException] = []

    async def wrapped(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await handler(reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        except BaseException as exc:
            errors.append(exc)
        finally:
            writer.close()

    server = await asyncio.start_server(wrapped, HOST, 0)
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        server.close()
        await server.wait_closed()
    if errors:
        raise errors[0]


async def read_command(reader: asyncio.StreamReader) -> bytes:
    return await asyncio.wait_for(reader.readuntil(b"\r\n"), 5)


async def read_until(reader: asyncio.StreamReader, marker: bytes) -> bytes:
    return await asyncio.wait_for(reader.readuntil(marker), 5)


RAW = "raw.example.test"  # the scripted peer's name


def raw_peer(port: int) -> Peer:
    return Peer(RAW, "127.0.0.1", port)


async def greet(reader, writer, extensions: bytes = b"250 PIPELINING\r\n") -> None:  # type: ignore[no-untyped-def]
    writer.write(b"220 raw.example.test ESMTP\r\n")
    assert (await read_command(reader)).startswith(b"EHLO ")
    writer.write(b"250-raw.example.test\r\n" + extensions)


async def pipelined_peer(  # type: ignore[no-untyped-def]
    reader, writer, seen: list[bytes], group: bytes, transactions: int = 1
) -> None:
    """A PIPELINING peer: per transaction it reads as many commands as ``group`` has
    replies before it answers any (a client that waited for a reply in between would
    stall here, RFC 2920 §3.1), then the body up to the final dot; then QUIT."""
    await greet(reader, writer)
    for _ in range(transactions):
        seen.extend([await read_command(reader) for _ in range(group.count(b"\r\n"))])
        writer.write(group)
        seen.append(await read_until(reader, b"\r\n.\r\n"))
        writer.write(b"250 2.0.0 queued\r\n")
    seen.append(await read_command(reader))
    writer.write(b"221 2.0.0 bye\r\n")


# -- Postfix smtp-sink ---------------------------------------------------------------


class SmtpSink:
    def __init__(self, proc: subprocess.Popen[bytes], address: str, port: int, dump: Path) -> None:
        self.proc = proc
        self.address = address
        self.port = port
        self.dump = dump

    def dumped(self, count: int = 1, timeout: float = 5.0) -> list[bytes]:
        """The transactions in the dump file (smtp-sink -D), waiting (bounded) until
        there are ``count``.  Each starts with smtp-sink's X-Client-Addr header."""
        deadline = time.monotonic() + timeout
        while True:
            data = self.dump.read_bytes() if self.dump.exists() else b""
            parts = [b"X-Client-Addr:" + p for p in data.split(b"X-Client-Addr:")[1:]]
            if len(parts) >= count or time.monotonic() >= deadline:
                return parts
            time.sleep(0.02)


@contextlib.contextmanager
def smtp_sink(tmp_path: Path, *options: str, unix: bool = False) -> Iterator[SmtpSink]:
    """``smtp-sink`` with ``options`` on a free loopback port (or a unix socket), its
    transactions dumped to a file; waits for its banner, killed at exit."""
    exe = require_tool("smtp-sink", "postfix")
    user: list[str] = []
    # As root smtp-sink must drop to another user (-u) after binding: it then writes
    # its dump as that user, so the dump lives in a folder that user may enter.
    dump_dir = Path(tempfile.mkdtemp(prefix="smtp-sink-"))
    if os.geteuid() == 0:
        user = ["-u", SINK_USER]
        dump_dir.chmod(0o777)
    dump = dump_dir / "sink.dump"
    if unix:
        address, port = str(tmp_path / "lmtp.sock"), 0
        listen = f"unix:{address}"
    else:
        address, port = HOST, free_port()
        listen = f"{HOST}:{port}"
    proc = subprocess.Popen(
        [exe, *user, "-D", str(dump), "-h", "sink.example.test", *options, listen, "10"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        _wait_for_banner(proc, address, port, unix)
        yield SmtpSink(proc, address, port, dump)
    finally:
        proc.kill()
        proc.wait(10)
        if proc.stderr is not None:
            proc.stderr.close()
        shutil.rmtree(dump_dir, ignore_errors=True)


def _wait_for_banner(proc: subprocess.Popen[bytes], address: str, port: int, unix: bool) -> None:
    deadline = time.monotonic() + SINK_START_TIMEOUT
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"smtp-sink exited: {proc.stderr.read() if proc.stderr else ''!r}")
        family = socket.AF_UNIX if unix else socket.AF_INET
        with socket.socket(family) as sock:
            sock.settimeout(2)
            try:
                sock.connect(address if unix else (address, port))
                if sock.recv(100).startswith(b"220"):
                    sock.sendall(b"QUIT\r\n")
                    return
            except OSError:
                pass
        time.sleep(0.05)
    raise AssertionError("smtp-sink did not greet in time")
