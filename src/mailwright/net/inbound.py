"""InboundSession: drives a ``smtp.ServerConnection`` over one asyncio connection.

An ``asyncio.Protocol`` (not streams) feeds received bytes straight into the core, so
there is no second buffer to copy through.  One task per session runs the loop::

    event = conn.next_event()
    NEED_DATA -> flush replies, wait for input (command or DATA-block timeout)
    DataChunk -> append to the spool body
    command   -> handler returns a reply -> conn.send(reply) -> write

This loop is the only place that writes replies, logs rejections and counts errors
(DESIGN principle 5).  Replies to pipelined commands are written together once no
complete command is left in the buffer (RFC 2920 §3.2 lets the server batch them).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import os
import ssl
from typing import TYPE_CHECKING, cast

from mailwright.config import ListenerConfig
from mailwright.net.auth import AuthExchange
from mailwright.net.handlers import Handlers, verdict_reply
from mailwright.net.tls import describe
from mailwright.policy.context import SessionContext
from mailwright.policy.pipeline import Stage
from mailwright.smtp import (
    NEED_DATA,
    PAUSED,
    Bdat,
    CommandError,
    ConnectionClosed,
    Data,
    DataChunk,
    Ehlo,
    EndOfData,
    Helo,
    MailFrom,
    RcptTo,
    Reply,
    ServerConnection,
    State,
    codes,
)
from mailwright.smtp.limits import MAX_PIPELINE_BUFFER

if TYPE_CHECKING:
    from mailwright.net.listener import Listener
    from mailwright.net.services import SessionServices

log = logging.getLogger(__name__)

# After a closing reply we stop writing but keep reading (and discarding) for a
# moment, so the client reads our reply instead of a TCP reset caused by unread data
# (the "lingering close" of Apache and Postfix).
LINGER_SECONDS = 2.0
# RFC 5321 §4.5.3.2 has no TLS figure; Postfix's smtpd_starttls_timeout is 300 s, a
# minute is plenty on today's links and frees the slot sooner.
TLS_HANDSHAKE_TIMEOUT = 60.0

# The mail-log stage of a refused command (other commands log their own name).
_STAGE_OF: dict[type, str] = {
    MailFrom: "mail",
    RcptTo: "rcpt",
    Data: "data",
    EndOfData: "data",
    Bdat: "data",
    Helo: "helo",
    Ehlo: "helo",
    CommandError: "command",
}


# Session ids for the log: process id and a counter, unique per process run and much
# cheaper than random tokens on the per-connection path.
_SESSION_COUNTER = itertools.count(1)


def _next_session_id() -> str:
    return f"{os.getpid():05x}{next(_SESSION_COUNTER):07x}"


class InboundSession(asyncio.Protocol):
    def __init__(
        self, services: SessionServices, listener: Listener, *, preadmitted: bool = False
    ) -> None:
        self._preadmitted = preadmitted  # implicit TLS: counted at accept time
        self.services = services
        self.listener = listener
        self.listener_config: ListenerConfig = listener.config
        self.hostname = services.config.smtp.hostname
        self.conn = ServerConnection(services.server_options)
        self.handlers = Handlers(self)
        self.auth = AuthExchange(self)
        self.ctx: SessionContext
        self.transport: asyncio.Transport | None = None
        self.reject_reason = ""
        self.store_failed = False
        self.close_after_reply = False
        self.shutdown_requested = False
        self.errors = 0
        self.messages = 0
        # The session task waits on this future for input; data_received resolves it.
        self._waiter: asyncio.Future[None] | None = None
        # While waiting: the loop time at which the wait times out (0 = not waiting).
        # The listener's watchdog checks it, so no timer is armed per command.
        self.wait_deadline = 0.0
        self.timed_out = False
        self._out: list[bytes] = []
        self._reading_paused = False
        self._writable: asyncio.Future[None] | None = None
        self._lost = False
        self._task: asyncio.Task[None] | None = None

    # -- asyncio.Protocol ----------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement the interface without subclassing it.
        self.transport = cast(asyncio.Transport, transport)
        peer = transport.get_extra_info("peername") or ("", 0)
        self.ctx = SessionContext(
            session_id=_next_session_id(),
            peer_ip=peer[0],
            peer_port=peer[1],
            role=self.listener_config.role,
        )
        ssl_object = transport.get_extra_info("ssl_object")
        if ssl_object is not None:
            # Implicit TLS (RFC 8314): the handshake is already done.
            self.conn.start_tls_direct()
            self.ctx.tls = describe(ssl_object)
        self.ctx.notes["require_auth"] = self.listener_config.auth_required
        self.ctx.notes["sender_login_match"] = self.listener_config.sender_login_matching
        refusal = self.listener.admit(self, preadmitted=self._preadmitted)
        if refusal is not None:
            # Over a connection cap: answer 421 4.7.0 without starting a session.
            transport.write(refusal.to_bytes())
            transport.close()
            return
        self._task = asyncio.get_running_loop().create_task(self._run())

    def data_received(self, data: bytes) -> None:
        self.conn.receive_data(data)
        transport = self.transport
        if (
            transport is not None
            and self.conn.buffered > MAX_PIPELINE_BUFFER
            and not self._reading_paused
        ):
            # Back-pressure through TCP instead of buffering without bound.
            transport.pause_reading()
            self._reading_paused = True
        self.wake()

    def eof_received(self) -> bool:
        self.conn.receive_data(b"")
        self.wake()
        # Keep our side open: a reply (e.g. 221) may still be owed.  A TLS transport
        # closes on EOF whatever we answer (and asyncio warns if we answer True).
        return not self.conn.tls_active

    def connection_lost(self, exc: Exception | None) -> None:
        self._lost = True
        self.wake()
        if self._writable is not None and not self._writable.done():
            self._writable.set_result(None)
        self.listener.release(self)

    def pause_writing(self) -> None:
        self._writable = asyncio.get_running_loop().create_future()

    def resume_writing(self) -> None:
        if self._writable is not None and not self._writable.done():
            self._writable.set_result(None)
        self._writable = None

    # -- control from the listener -------------------------------------------------

    def request_shutdown(self) -> None:
        """Stage 2 of graceful shutdown: idle sessions get 421 4.3.2 at once; a
        session inside DATA/BDAT finishes its message first."""
        self.shutdown_requested = True
        self.wake()

    def abort(self) -> None:
        """Stage 3: the grace period is over."""
        if self._task is not None and not self._task.done():
            self._task.cancel()

    async def wait_closed(self) -> None:
        if self._task is not None:
            await asyncio.gather(self._task, return_exceptions=True)

    # -- the session loop ----------------------------------------------------------

    async def _run(self) -> None:
        services = self.services
        cfg = services.config.smtp
        loop = asyncio.get_running_loop()
        deadline = loop.time() + cfg.session_timeout
        services.maillog.connect(self.ctx.session_id, self.ctx.peer_ip)
        if self.ctx.tls:  # implicit TLS: negotiated before the session started
            self._log_tls()
        try:
            await self._greet(cfg.greeting_delay)
            while self._open:
                event = self.conn.next_event()
                if event is NEED_DATA:
                    if self.shutdown_requested and self.conn.state not in (
                        State.DATA,
                        State.BDAT,
                    ):
                        self._close_with(codes.R421_SHUTTING_DOWN)
                        break
                    in_data = self.conn.state is State.DATA or self.conn.transaction.bdat_size
                    timeout = cfg.data_block_timeout if in_data else cfg.command_timeout
                    if not await self._wait_input(min(timeout, deadline - loop.time())):
                        self._close_with(codes.R421_TIMEOUT)
                        break
                elif isinstance(event, DataChunk):
                    self.handlers.write_chunk(event.data)
                elif isinstance(event, ConnectionClosed):
                    break
                elif event is PAUSED:  # pragma: no cover - the loop answers every event
                    raise RuntimeError("session paused with no reply owed")
                else:
                    reply = await self.handlers.dispatch[type(event)](event)
                    if reply.code >= 400 and reply.code not in (421, 521):
                        await self._tarpit()
                    self._reply(event, reply)
                    if self.conn.state is State.TLS and not await self._upgrade_tls():
                        break
        except asyncio.CancelledError:
            if not self._lost and self.conn.state is not State.CLOSED:
                self._close_with(codes.R421_SHUTTING_DOWN)
        except Exception:
            log.exception("session %s failed", self.ctx.session_id)
            if not self._lost and self.conn.state is not State.CLOSED:
                self._close_with(R421_LOCAL_ERROR)
        finally:
            self.handlers.abort_message()
            await self._close()
            services.maillog.disconnect(
                self.ctx.session_id,
                self.ctx.peer_ip,
                {"messages": self.messages, "errors": self.errors},
            )
            self._release_references()

    def _release_references(self) -> None:
        """Break the reference cycles a finished session sits in (transport <->
        protocol, session <-> handlers), so it is freed by reference counting at once.
        Left to the cycle collector, a dead TLS session kept its SSL object and the
        transport's read buffer for a long while: RSS climbed under TLS load
        (bench/tls_load.py found it)."""
        self.transport = None
        self.handlers.dispatch.clear()

    @property
    def _open(self) -> bool:
        return self.conn.state is not State.CLOSED and not self._lost and not self.close_after_reply

    @property
    def starttls_available(self) -> bool:
        return (
            self.services.tls is not None
            and not self.conn.tls_active
            and not self.listener_config.implicit_tls
        )

    async def _tarpit(self) -> None:
        """Postfix smtpd_error_sleep_time: slow down a client that keeps erring."""
        abuse = self.services.config.abuse
        excess = self.errors + 1 - abuse.tarpit_after
        if excess > 0 and abuse.tarpit_delay > 0:
            await asyncio.sleep(min(abuse.tarpit_delay * excess, abuse.tarpit_max_delay))

    async def _upgrade_tls(self) -> bool:
        """Run the STARTTLS handshake after our 220 (RFC 3207 §4)."""
        tls = self.services.tls
        assert tls is not None and self.transport is not None
        self._flush()
        if self._reading_paused:
            self._reading_paused = False
            self.transport.resume_reading()
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(TLS_HANDSHAKE_TIMEOUT):
                transport = await loop.start_tls(
                    self.transport, self, tls.server_context, server_side=True
                )
        except (OSError, ssl.SSLError, TimeoutError, ConnectionError) as exc:
            self.reject_reason = f"TLS handshake failed: {exc}"
            self.services.maillog.rejected(
                self.ctx.session_id,
                self.ctx.peer_ip,
                "starttls",
                "TLS handshake failed",
                str(exc),
                helo=self.ctx.helo,
            )
            self._lost = True
            self.transport.abort()
            return False
        if transport is None:  # pragma: no cover - the peer closed during the handshake
            self._lost = True
            return False
        self.transport = cast(asyncio.Transport, transport)
        # RFC 3207 §4.2: forget everything learnt before TLS (the core also drops any
        # plaintext that arrived after STARTTLS: CVE-2011-0411).
        self.conn.tls_established()
        self.ctx.tls = describe(transport.get_extra_info("ssl_object"))
        self.ctx.helo = None
        self.ctx.auth_user = None
        self._log_tls()
        return True

    def _log_tls(self) -> None:
        """The negotiated protocol and cipher, in the mail log (as in Received)."""
        version, _, cipher = (self.ctx.tls or "").partition(" ")
        self.services.maillog.emit(
            self.ctx.session_id,
            "tls",
            client=self.ctx.peer_ip,
            version=version,
            cipher=cipher or None,
        )

    async def _greet(self, delay: float) -> None:
        if delay > 0:
            await asyncio.sleep(delay)
        if self.conn.early_talker:
            # RFC 5321 §4.3.1 / Postfix postscreen "pregreet": a client that talks
            # before the greeting is a bot that does not wait for replies.
            self.reject_reason = "early talker: data sent before greeting"
            self._reply(None, codes.R554_EARLY_TALKER)
            return
        verdict = await self.services.pipeline.run(Stage.CONNECT, self.ctx)
        reply, self.reject_reason = verdict_reply(verdict, self.listener.greeting)
        if reply.is_permanent and reply.code != 554:
            # RFC 5321 §3.1: a server refusing a session greets with 554.
            reply = Reply(554, "5.7.1", reply.lines)
        self._reply(None, reply)

    def _reply(self, event: object, reply: Reply) -> None:
        """The one place replies are written, logged and counted."""
        cfg = self.services.config.smtp
        if reply.code >= 400:
            self.errors += 1
            if self.errors >= cfg.max_errors and reply.code not in (421, 521):
                # Postfix smtpd_hard_error_limit: the reply to the last straw is 421.
                self._log_rejection(event, reply)
                reply = codes.R421_TOO_MANY_ERRORS
            self._log_rejection(event, reply)
        self._out.append(self.conn.send(reply))
        if self.conn.buffered == 0 or self.conn.state is State.CLOSED or self.close_after_reply:
            self._flush()

    def _log_rejection(self, event: object, reply: Reply) -> None:
        if event is None:
            stage = "connect"
        else:
            stage = _STAGE_OF.get(type(event)) or type(event).__name__.lower()
        mail = self.conn.transaction.mail
        rcpt = event.address if isinstance(event, RcptTo) else None
        self.services.maillog.rejected(
            self.ctx.session_id,
            self.ctx.peer_ip,
            stage,
            reply,
            self.reject_reason,
            mail_from=None if mail is None else str(mail.address or ""),
            rcpt=None if rcpt is None else str(rcpt),
            helo=self.ctx.helo,
        )
        self.reject_reason = ""

    def _close_with(self, reply: Reply) -> None:
        self.errors += reply.code >= 400
        self._out.append(self.conn.close_with(reply))
        self._flush()

    def _flush(self) -> None:
        if self._out and self.transport is not None and not self._lost:
            self.transport.write(b"".join(self._out))
        self._out.clear()

    def wake(self) -> None:
        """Resume the session task if it is waiting (input, EOF, timeout, shutdown)."""
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def _wait_input(self, timeout: float) -> bool:
        """Wait for more input; False on timeout."""
        self._flush()
        if self._writable is not None:
            # The client is not reading our replies: wait before reading more.
            try:
                async with asyncio.timeout(max(timeout, 0)):
                    await self._writable
            except TimeoutError:
                return False
        if self._reading_paused and self.transport is not None:
            self._reading_paused = False
            self.transport.resume_reading()
        loop = asyncio.get_running_loop()
        self.wait_deadline = loop.time() + max(timeout, 0)
        self._waiter = loop.create_future()
        try:
            await self._waiter
        finally:
            self._waiter = None
            self.wait_deadline = 0.0
        return not self.timed_out

    async def _close(self) -> None:
        self._flush()
        transport = self.transport
        if transport is None or self._lost:
            return
        if transport.can_write_eof():
            with contextlib.suppress(OSError):  # the peer may be gone already
                transport.write_eof()
            # Linger: discard whatever the peer still sends until it closes or the
            # bound expires, so it sees our last reply rather than a reset.
            deadline = asyncio.get_running_loop().time() + LINGER_SECONDS
            while not self._lost and not self.conn.peer_closed:
                if not await self._wait_input(deadline - asyncio.get_running_loop().time()):
                    break
        transport.close()


R421_LOCAL_ERROR = Reply.of(421, "4.3.0", "Local error, closing connection")
