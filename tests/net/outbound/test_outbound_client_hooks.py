"""The outbound session's hooks for a test client (``mailwright send``): the wire tap,
implicit TLS, ``stop_after`` and the BDAT chunk size — and that the session runs on
uvloop (regression: ``connection_made`` asserted asyncio's Transport class, which
uvloop's transports do not inherit, so every connection failed)."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any, TypeVar

import pytest
import uvloop

from helpers.outbound import message, settings
from helpers.secure import secure_extra, write_users
from helpers.servers import InProcessServer
from mailwright.net.outbound import OutboundSession, Peer, SessionError, Stage, TlsMode, TlsPolicy

T = TypeVar("T")
NO_TLS = TlsPolicy(TlsMode.NONE)
ENCRYPT = TlsPolicy(TlsMode.ENCRYPT)


@pytest.fixture
def server(make_server: Any) -> InProcessServer:
    return make_server(extra=secure_extra(), prepare=write_users)


def on_uvloop(coro: Coroutine[Any, Any, T]) -> T:
    async def bounded() -> T:
        async with asyncio.timeout(30):
            return await coro

    return uvloop.run(bounded())


def test_session_on_uvloop_delivers(server: InProcessServer) -> None:
    async def go() -> bool:
        peer = Peer("mx.example.test", "127.0.0.1", server.ports["inbound"])
        session = await OutboundSession.open(peer, settings(), ENCRYPT)
        result = await session.send(message("alice@example.test"))
        await session.quit()
        return all(r.delivered for r in result.recipients)

    assert on_uvloop(go())


def test_wire_tap_sees_every_octet_in_order_with_tls_flag(server: InProcessServer) -> None:
    seen: list[tuple[bool, bytes, bool]] = []

    async def go() -> None:
        peer = Peer("mx.example.test", "127.0.0.1", server.ports["submission"])
        trace = settings(trace=lambda out, data, tls: seen.append((out, data, tls)))
        session = await OutboundSession.open(peer, trace, ENCRYPT)
        await session.quit()

    asyncio.run(go())
    written = b"".join(d for out, d, tls in seen if out and not tls)
    assert written == b"EHLO client.example.test\r\nSTARTTLS\r\n"
    assert b"".join(d for out, d, tls in seen if out and tls) == (
        b"EHLO client.example.test\r\nQUIT\r\n"
    )
    assert b"".join(d for out, d, tls in seen if not out and not tls).startswith(b"220 ")
    assert b"221 2.0.0 Bye\r\n" in b"".join(d for out, d, tls in seen if not out and tls)


def test_implicit_tls_and_its_failure_is_a_tls_stage(server: InProcessServer) -> None:
    async def go(port: int) -> str | None:
        peer = Peer("mx.example.test", "127.0.0.1", port)
        session = await OutboundSession.open(peer, settings(implicit_tls=True), ENCRYPT)
        version = session.info.tls_version
        await session.quit()
        return version

    assert asyncio.run(go(server.ports["submissions"])) == "TLSv1.3"
    with pytest.raises(SessionError) as caught:  # a plaintext port answers no handshake
        asyncio.run(go(server.ports["inbound"]))
    assert caught.value.stage is Stage.TLS


@pytest.mark.parametrize(
    ("stop", "last"),
    [
        (Stage.GREETING, Stage.GREETING),
        (Stage.EHLO, Stage.EHLO),
        (Stage.MAIL, Stage.QUIT),
        (Stage.RCPT, Stage.QUIT),
    ],
)
def test_stop_after(server: InProcessServer, stop: Stage, last: Stage) -> None:
    async def go() -> list[Stage]:
        peer = Peer("mx.example.test", "127.0.0.1", server.ports["inbound"])
        session = await OutboundSession.open(peer, settings(stop_after=stop), NO_TLS)
        entries = list(session.transcript)
        if stop in (Stage.MAIL, Stage.RCPT):
            result = await session.send(message("alice@example.test"))
            assert not any(r.delivered for r in result.recipients)
            assert result.reason.startswith("stopped after")
            entries = [*entries, *result.transcript]
        await session.quit()
        return [e.stage for e in entries]

    stages = asyncio.run(go())
    assert stages[-1] is last
    assert Stage.MESSAGE not in stages


def test_bdat_chunk_size(server: InProcessServer) -> None:
    async def go() -> list[str]:
        peer = Peer("mx.example.test", "127.0.0.1", server.ports["inbound"])
        session = await OutboundSession.open(peer, settings(bdat_chunk_size=50), NO_TLS)
        result = await session.send(message("alice@example.test"))
        await session.quit()
        assert all(r.delivered for r in result.recipients)
        return [e.command for e in result.transcript if e.stage in (Stage.BDAT, Stage.MESSAGE)]

    commands = asyncio.run(go())
    assert commands[:-1] == ["BDAT 50"] * (len(commands) - 1)
    assert commands[-1].endswith(" LAST")
