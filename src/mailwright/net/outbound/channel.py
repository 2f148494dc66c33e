"""One client connection's transport: asyncio in, ``smtp.ClientConnection`` in charge.

``Channel`` owns an ``asyncio.Protocol`` whose ``data_received`` hands every octet to
the sans-IO core at once, so the core sees the plaintext/TLS boundary exactly: once
it has read the 220 to STARTTLS it drops input until ``tls_established()``, and the
handshake (``loop.start_tls``) takes the transport over before it first yields.  What
a man in the middle appends to the 220 can therefore never be read as a reply that
came through TLS (the client half of CVE-2011-0411); a stream reader would keep it
buffered across the upgrade.

Every read and write is bounded by the caller's timeout; failures come out as
``ChannelError`` with the reply to record (``smtp.codes``), which the session turns
into a ``SessionError`` or into temporary recipient results.  Writes respect the
transport's flow control (pause/resume_writing), so a slow peer cannot make us
buffer a whole message in memory twice.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Iterable
from typing import cast

from mailwright.net.outbound.model import Peer, Stage, TranscriptEntry, WireTrace
from mailwright.smtp import (
    NEED_DATA,
    PAUSED,
    ClientConnection,
    ConnectionClosed,
    Event,
    ProtocolError,
    Reply,
    codes,
)


class ChannelError(Exception):
    """The connection failed: ``reply`` is what to record for what it left unanswered."""

    def __init__(self, reason: str, reply: Reply) -> None:
        super().__init__(reason)
        self.reason = reason
        self.reply = reply


def _expire(waiter: asyncio.Future[bool]) -> None:
    if not waiter.done():
        waiter.set_result(False)


class _Protocol(asyncio.Protocol):
    def __init__(self, conn: ClientConnection) -> None:
        self.conn = conn
        self.transport: asyncio.Transport | None = None
        self.lost = False
        self.lost_reason = ""
        self._wakeup: asyncio.Future[bool] | None = None
        self._can_write: asyncio.Future[None] | None = None
        self._paused_reading = False
        self.trace: WireTrace | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # A cast, not an isinstance check: uvloop's transports (serve's event loop)
        # implement asyncio.Transport without subclassing it.
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        if self.trace is not None:
            self.trace(False, data, self.conn.tls_active)
        self.conn.receive_data(data)
        if self._wakeup is None or self._wakeup.done():
            # Nobody waits for a reply: stop reading, so a peer that talks out of
            # turn (or floods an idle pooled connection) is not buffered without end.
            self.pause_reading()
        self._wake()

    def eof_received(self) -> bool:
        self.conn.receive_data(b"")
        self._wake()
        return False  # close our side too

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True
        self.lost_reason = str(exc) if exc else "connection closed by peer"
        self.conn.receive_data(b"")
        self._wake()
        if self._can_write is not None and not self._can_write.done():
            self._can_write.set_result(None)

    def pause_writing(self) -> None:
        if self._can_write is None or self._can_write.done():
            self._can_write = asyncio.get_running_loop().create_future()

    def resume_writing(self) -> None:
        if self._can_write is not None and not self._can_write.done():
            self._can_write.set_result(None)

    def _wake(self) -> None:
        if self._wakeup is not None and not self._wakeup.done():
            self._wakeup.set_result(True)

    async def wait_input(self, deadline: float) -> bool:
        """Until input, EOF or loss (True), or loop time ``deadline`` (False).  One
        timer handle, not ``asyncio.timeout``'s task-cancelling scope: this runs for
        every reply the relay waits for."""
        loop = asyncio.get_running_loop()
        waiter: asyncio.Future[bool] = loop.create_future()
        self._wakeup = waiter
        if self._paused_reading and self.transport is not None:
            self._paused_reading = False
            self.transport.resume_reading()
        timer = loop.call_at(deadline, _expire, waiter)
        try:
            return await waiter
        finally:
            timer.cancel()

    def pause_reading(self) -> None:
        if not self._paused_reading and self.transport is not None and not self.lost:
            self._paused_reading = True
            self.transport.pause_reading()

    async def writable(self) -> None:
        if self._can_write is not None and not self._can_write.done():
            await self._can_write


class Channel:
    """The connection to one peer: write events, read replies, upgrade to TLS."""

    def __init__(self, peer: Peer, protocol: _Protocol) -> None:
        self.peer = peer
        self.conn = protocol.conn
        self._protocol = protocol
        self.transcript: list[TranscriptEntry] = []

    @classmethod
    async def connect(
        cls,
        peer: Peer,
        timeout: float,
        *,
        unix: bool = False,
        lmtp: bool = False,
        trace: WireTrace | None = None,
        tls: ssl.SSLContext | None = None,
        server_hostname: str | None = None,
        handshake_timeout: float | None = None,
    ) -> Channel:
        """Connect; with ``tls``, implicit TLS (RFC 8314 §3.3): the handshake is part
        of connecting, and its failure says so (4.7.5, not "no answer")."""
        loop = asyncio.get_running_loop()
        protocol = _Protocol(ClientConnection(lmtp=lmtp))
        protocol.trace = trace
        try:
            async with asyncio.timeout(timeout):
                if unix:
                    await loop.create_unix_connection(lambda: protocol, peer.address)
                elif tls is not None:
                    await loop.create_connection(
                        lambda: protocol,
                        peer.address,
                        peer.port,
                        ssl=tls,
                        server_hostname=server_hostname or "",
                        ssl_handshake_timeout=handshake_timeout,
                    )
                    # Everything on this connection is inside TLS, as after STARTTLS.
                    protocol.conn.tls_active = True
                else:
                    await loop.create_connection(lambda: protocol, peer.address, peer.port)
        except ssl.SSLError as exc:
            raise ChannelError(f"TLS handshake failed: {exc}", codes.R451_TLS_FAILED) from None
        except TimeoutError:
            raise ChannelError(
                f"connect timed out after {timeout:g}s", codes.R451_NO_ANSWER
            ) from None
        except OSError as exc:
            raise ChannelError(
                f"connect failed: {exc.strerror or exc}", codes.R451_NO_ANSWER
            ) from None
        return cls(peer, protocol)

    @property
    def ssl_object(self) -> ssl.SSLObject | None:
        transport = self._protocol.transport
        if transport is None:
            return None
        obj = transport.get_extra_info("ssl_object")
        return obj if isinstance(obj, ssl.SSLObject) else None

    @property
    def alive(self) -> bool:
        return not self._protocol.lost and self.conn.state.value not in ("closed", "error")

    # -- output -------------------------------------------------------------------

    def write(self, events: Iterable[Event]) -> None:
        """Write ``events`` in one transport write (a pipelined group, RFC 2920 §3.1)."""
        if self._protocol.lost or self._protocol.transport is None:
            raise ChannelError(self._protocol.lost_reason, codes.R451_CONNECTION_LOST)
        try:
            data = b"".join(self.conn.send(event) for event in events)
        except ProtocolError as exc:
            raise ChannelError(f"protocol error: {exc}", codes.R451_PEER_PROTOCOL_ERROR) from None
        except ValueError as exc:  # text the core cannot write (CR/LF in a HELO name)
            raise ChannelError(f"cannot write command: {exc}", codes.R451_AGENT_ERROR) from None
        if self._protocol.trace is not None:
            self._protocol.trace(True, data, self.conn.tls_active)
        self._protocol.transport.write(data)

    async def drain(self, timeout: float) -> None:
        """Wait until the transport takes more data (bounded: RFC 5321 §4.5.3.2.5)."""
        protocol = self._protocol
        can_write = protocol._can_write
        if (can_write is None or can_write.done()) and not protocol.lost:
            return  # not paused: no timer needed (the common case, every message)
        try:
            async with asyncio.timeout(timeout):
                await self._protocol.writable()
        except TimeoutError:
            raise ChannelError(
                f"write timed out after {timeout:g}s", codes.R451_PEER_TIMEOUT
            ) from None
        if self._protocol.lost:
            raise ChannelError(self._protocol.lost_reason, codes.R451_CONNECTION_LOST)

    # -- input --------------------------------------------------------------------

    async def reply(self, stage: Stage, command: str, timeout: float) -> Reply:
        """The next reply, recorded in the transcript; ChannelError on timeout, EOF
        or a malformed reply."""
        # Fast path: a reply already buffered (the rest of a pipelined group's
        # answers, RFC 2920 §3.1, usually arrive in one read) needs no timer.
        try:
            event = self.conn.next_event()
        except ProtocolError as exc:
            raise ChannelError(f"protocol error: {exc}", codes.R451_PEER_PROTOCOL_ERROR) from None
        if isinstance(event, Reply):
            self.transcript.append(TranscriptEntry(stage, command, event))
            return event
        deadline = asyncio.get_running_loop().time() + timeout
        try:
            while True:
                event = self.conn.next_event()
                if isinstance(event, Reply):
                    self.transcript.append(TranscriptEntry(stage, command, event))
                    return event
                if isinstance(event, ConnectionClosed):
                    raise ChannelError(
                        f"connection closed by peer while waiting for the {stage.value} reply",
                        codes.R451_CONNECTION_LOST,
                    )
                if event is PAUSED:  # pragma: no cover - start_tls() is called first
                    raise ChannelError(
                        "reply awaited during the TLS handshake", codes.R451_PEER_PROTOCOL_ERROR
                    )
                assert event is NEED_DATA
                if not await self._protocol.wait_input(deadline):
                    raise ChannelError(
                        f"timed out after {timeout:g}s waiting for the {stage.value} reply",
                        codes.R451_PEER_TIMEOUT,
                    )
        except ProtocolError as exc:
            raise ChannelError(f"protocol error: {exc}", codes.R451_PEER_PROTOCOL_ERROR) from None

    async def start_tls(
        self, context: ssl.SSLContext, server_hostname: str | None, timeout: float
    ) -> None:
        """The handshake after the 220 to STARTTLS (RFC 3207 §4); then the core drops
        everything buffered in plaintext behind the 220."""
        loop = asyncio.get_running_loop()
        transport = self._protocol.transport
        assert transport is not None
        try:
            upgraded = await loop.start_tls(
                transport,
                self._protocol,
                context,
                server_hostname=server_hostname,
                ssl_handshake_timeout=timeout,
            )
        except (OSError, ssl.SSLError, TimeoutError, ConnectionError) as exc:
            transport.abort()
            raise ChannelError(f"TLS handshake failed: {exc}", codes.R451_TLS_FAILED) from None
        if upgraded is None:  # pragma: no cover - the peer closed during the handshake
            raise ChannelError("connection closed during the TLS handshake", codes.R451_TLS_FAILED)
        self._protocol.transport = upgraded
        self.conn.tls_established()

    def close(self) -> None:
        transport = self._protocol.transport
        if transport is not None and not transport.is_closing():
            transport.close()

    def abort(self) -> None:
        transport = self._protocol.transport
        if transport is not None:
            transport.abort()
