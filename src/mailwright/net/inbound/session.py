"""InboundSession: drives a ``smtp.ServerConnection`` over one asyncio connection.

(Over ~500 lines: the loop, its fast path and the close are one state machine
and read best together; STARTTLS and the log lines already live apart.)

An ``asyncio.Protocol`` (not streams) feeds received bytes straight into the core, so
there is no second buffer to copy through.  The session advances in ``_advance``::

    event = conn.next_event()
    NEED_DATA -> flush replies, wait for input (command or DATA-block timeout)
    DataChunk -> append to the spool body
    command   -> handler returns an Outcome -> conn.send(outcome.reply) -> write

``_advance`` is synchronous and runs in two places.  One task per session runs it in
a loop and does everything that has to wait: the greeting, storing a message, AUTH,
coroutine policy hooks, the tarpit, the TLS handshake, timeouts and the close.  And
while that task is parked waiting for a command, ``data_received`` runs ``_advance``
itself: a command whose handler answers at once (HELO/EHLO, MAIL, RCPT, DATA, RSET,
NOOP, QUIT... when every policy hook is a plain function) is answered right there,
without two task switches per command.  Whatever needs waiting is handed to the task
(``_handover``), in order, and the fast path stays off until the task has taken it.

Handlers (``handlers``, ``auth``) return the whole outcome of a command (``Outcome``:
the reply, the reason to log, whether to close) and see the session only through a
narrow ``SessionView``; ``_reply`` is the only place that writes replies, logs
rejections and counts errors (DESIGN principle 5).  Replies to pipelined commands are
written together once no complete command is left in the buffer (RFC 2920 §3.2 lets
the server batch them).
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import itertools
import logging
import os
import socket
from dataclasses import dataclass
from typing import Protocol, cast

from mailwright.config import ListenerConfig
from mailwright.net.inbound.handlers import Handlers
from mailwright.net.inbound.outcome import Answer, Outcome, verdict_outcome
from mailwright.net.inbound.sessionlog import log_rejection, log_tls
from mailwright.net.inbound.starttls import upgrade_to_tls
from mailwright.net.inbound.view import SessionView
from mailwright.net.services import SessionServices
from mailwright.net.stress import STRESS_MAX_ERRORS
from mailwright.net.tls import describe
from mailwright.policy.context import SessionContext
from mailwright.policy.pipeline import Stage
from mailwright.policy.verdict import Verdict
from mailwright.smtp import (
    NEED_DATA,
    PAUSED,
    ConnectionClosed,
    DataChunk,
    Event,
    Quit,
    Reply,
    ServerConnection,
    State,
    codes,
)
from mailwright.smtp.limits import MAX_PIPELINE_BUFFER

log = logging.getLogger(__name__)

# After a closing reply we stop writing but keep reading (and discarding) for a
# moment, so the client reads our reply instead of a TCP reset caused by unread data
# (the "lingering close" of Apache and Postfix).
LINGER_SECONDS = 2.0

# Session ids for the log: process id and a counter, unique per process run and much
# cheaper than random tokens on the per-connection path.
_SESSION_COUNTER = itertools.count(1)
_CORK: int | None = getattr(socket, "TCP_CORK", None)  # Linux
# The server process never forks after import, and getpid() is a system call per
# call on current glibc: read it once.
_PID_PREFIX = f"{os.getpid():05x}"


def _next_session_id() -> str:
    return f"{_PID_PREFIX}{next(_SESSION_COUNTER):07x}"


class _Step(enum.Enum):
    """Where ``_advance`` stopped, when it did not stop at a command to answer later."""

    INPUT = enum.auto()  # wait for more input
    SHUTDOWN = enum.auto()  # idle while the server stops: 421 and close
    ENDED = enum.auto()  # closed, lost, or QUIT answered
    STARTTLS = enum.auto()  # 220 to STARTTLS sent: run the handshake


@dataclass(slots=True)
class _Later:
    """A command the task must finish: its answer is awaitable, or it is an error
    reply that the tarpit delays."""

    event: Event
    answer: Answer


_Handover = _Step | _Later | Exception


class SessionHost(Protocol):
    """What a session needs of the listener that accepted it (``net.listener.Listener``
    provides it; the listener imports the session, never the other way round)."""

    config: ListenerConfig
    greeting: Reply  # the 220, built once per listener

    @property
    def stressed(self) -> bool:
        """Stress mode (``net.stress``): the error limit is lower."""
        ...

    def admit(self, session: InboundSession, *, preadmitted: bool) -> Reply | None:
        """Count the session against the connection caps; the 421 if over one."""
        ...

    def release(self, session: InboundSession) -> None:
        """The session's connection is gone: its slot is free."""
        ...


class InboundSession(asyncio.Protocol):
    def __init__(
        self, services: SessionServices, listener: SessionHost, *, admitted_ip: str | None = None
    ) -> None:
        # Counted against the connection caps at accept time, under this client IP
        # (implicit TLS, session processes): released under the same IP even if the
        # transport can no longer tell the peer (reset before the session started).
        self._admitted_ip = admitted_ip
        self.services = services
        self.listener = listener
        self.listener_config: ListenerConfig = listener.config
        self.conn = ServerConnection(services.server_options)
        # Built in connection_made, with the policy context they see.
        self.ctx: SessionContext
        self.handlers: Handlers
        self.transport: asyncio.Transport | None = None
        # The outcome last written asked to close the connection (a Disconnect verdict).
        self._close_after_reply = False
        self.shutdown_requested = False
        self.quit_answered = False  # 221 sent in reply to QUIT
        self.errors = 0
        # The session task waits on this future for input; data_received resolves it.
        self._waiter: asyncio.Future[None] | None = None
        # While waiting: the loop time at which the wait times out (0 = not waiting),
        # and the earlier one that applies in stress mode (net.stress).  The
        # listener's watchdog checks them, so no timer is armed per command.
        self.wait_deadline = 0.0
        self.stress_deadline = 0.0
        self.timed_out = False
        # The deadlines of what the server waits for now: a command line, counted from
        # when the server became ready for it (_start_deadline; bytes trickling in do
        # not restart it), or a DATA/BDAT body, which earns time as it arrives (_credit).
        self._deadline = 0.0
        self._stress_deadline = 0.0
        self.started_at = 0.0  # loop time of connection_made: stress mode closes the oldest
        self.closing_for_room = False  # make_room() chose this session
        # The tarpit's sleep, which ends early when the peer goes away (_peer_left).
        self._sleeper: asyncio.Future[None] | None = None
        # True while the task waits for a command: data_received may answer it.
        self._parked = False
        # What data_received's _advance left for the task; the fast path is off until
        # the task takes it, so commands are still answered in order.
        self._handover: _Handover | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._session_deadline = 0.0
        smtp = services.config.smtp
        self._command_timeout = smtp.command_timeout
        self._idle_timeout = min(smtp.idle_timeout, smtp.command_timeout)
        self._data_block_timeout = smtp.data_block_timeout
        self._stress_timeout = smtp.stress_timeout
        self._min_data_rate = smtp.min_data_rate
        self._out: list[bytes] = []
        self._reading_paused = False
        self._writable: asyncio.Future[None] | None = None
        self._lost = False
        self._task: asyncio.Task[None] | None = None

    # -- asyncio.Protocol ----------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement the interface without subclassing it.
        self.transport = transport = cast(asyncio.Transport, transport)
        peer = transport.get_extra_info("peername") or ("", 0)
        if self._admitted_ip is not None:
            peer = (self._admitted_ip, peer[1])
        self.ctx = SessionContext(
            session_id=_next_session_id(),
            peer_ip=peer[0],
            peer_port=peer[1],
            role=self.listener_config.role,
            local_ip=(transport.get_extra_info("sockname") or ("",))[0],
            require_auth=self.listener_config.auth_required,
            sender_login_match=self.listener_config.sender_login_matching,
            from_header_match=self.listener_config.from_header_match,
        )
        ssl_object = (
            transport.get_extra_info("ssl_object") if self.listener_config.implicit_tls else None
        )
        if ssl_object is not None:
            # Implicit TLS (RFC 8314): the handshake is already done.
            self.conn.start_tls_direct()
            self.ctx.tls = describe(ssl_object)
        self.handlers = Handlers(
            SessionView(self.ctx, self.conn, self.services, self.listener_config)
        )
        refusal = self.listener.admit(self, preadmitted=self._admitted_ip is not None)
        if refusal is not None:
            # Over a connection cap: answer 421 4.7.0 without starting a session.
            transport.write(refusal.to_bytes())
            transport.close()
            return
        self._loop = loop = asyncio.get_running_loop()
        self.started_at = loop.time()
        self._task = loop.create_task(self._run())

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
        if self._parked and self._writable is None:
            self._answer_now()
        else:
            self.wake()

    def _answer_now(self) -> None:
        """The fast path: the task waits for a command, so answer here what can be
        answered at once, and hand the rest to the task (see the module docstring)."""
        try:
            step: _Step | _Later | Exception = self._advance()
        except Exception as exc:  # the task raises it in its own handler: 421, logged
            step = exc
        if step is _Step.INPUT:
            self.flush()
            self.resume_reading()
            # Still waiting: for the next command if one was answered (its own
            # deadline started with the reply), or for more of the same.
            self.wait_deadline = self._deadline
            self.stress_deadline = self._stress_deadline
            return
        self._handover = step
        self.wake()

    def eof_received(self) -> bool:
        self.conn.receive_data(b"")
        self._peer_left()
        # Keep our side open: a reply (e.g. 221) may still be owed.  A TLS transport
        # closes on EOF whatever we answer (and asyncio warns if we answer True).
        return not self.conn.tls_active

    def connection_lost(self, exc: Exception | None) -> None:
        self._lost = True
        self._peer_left()
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

    def make_room(self) -> None:
        """Stress mode at the cap: a new client needs this idle session's slot."""
        self.closing_for_room = True
        self.wake()

    @property
    def idle(self) -> bool:
        """Waiting for a command with no transaction begun (no MAIL yet, not in
        DATA/BDAT, not closing): what stress mode may close to make room."""
        conn = self.conn
        return (
            self.wait_deadline != 0.0
            and conn.state in _IDLE_STATES
            and conn.transaction.mail is None
            and not self.closing_for_room
            and not self.shutdown_requested
            and not self._lost
            and not conn.peer_closed
        )

    def abort(self) -> None:
        """Stage 3: the grace period is over."""
        if self._task is not None and not self._task.done():
            self._task.cancel()

    async def wait_closed(self) -> None:
        if self._task is not None:
            await asyncio.gather(self._task, return_exceptions=True)

    # -- the session loop ----------------------------------------------------------

    def _advance(self) -> _Step | _Later:
        """Handle buffered input until a wait is needed (synchronous; module docstring)."""
        conn = self.conn
        handlers = self.handlers
        while self._open:
            event = conn.next_event()
            if event is NEED_DATA:
                if self.shutdown_requested and conn.state not in (State.DATA, State.BDAT):
                    return _Step.SHUTDOWN
                return _Step.INPUT
            if isinstance(event, DataChunk):
                handlers.write_chunk(event.data)
                self._credit(len(event.data))
                continue
            if isinstance(event, ConnectionClosed):
                return _Step.ENDED
            if event is PAUSED:  # pragma: no cover - every event is answered
                raise RuntimeError("session paused with no reply owed")
            # `is` on the NEED_DATA/PAUSED instances does not narrow Event | _Sentinel.
            answer = handlers.dispatch(event)  # type: ignore[arg-type]
            if not isinstance(answer, Outcome) or self._tarpit_delay(answer.reply) > 0:
                return _Later(event, answer)  # type: ignore[arg-type]
            self._reply(event, answer)
            if conn.state is State.TLS:
                return _Step.STARTTLS
        return _Step.ENDED

    def _input_limit(self) -> float:
        """RFC 5321 §4.5.3.2: the command timeout (shorter before MAIL: idle), or the
        DATA-block one inside DATA/BDAT."""
        conn = self.conn
        if conn.state is State.DATA or conn.transaction.bdat_size:
            return self._data_block_timeout
        if conn.transaction.mail is None:
            return self._idle_timeout
        return self._command_timeout

    def _start_deadline(self) -> None:
        """The server is ready for the next command (or for DATA's body): its time
        starts now, within what is left of the session's total."""
        assert self._loop is not None
        now = self._loop.time()
        self._deadline = min(now + self._input_limit(), self._session_deadline)
        self._stress_deadline = min(now + self._stress_timeout, self._deadline)

    def _credit(self, octets: int) -> None:
        """Body octets received earn time at the minimum data rate (Postfix
        smtpd_min_data_rate), never more than one DATA-block timeout ahead: a client
        that keeps the rate is never cut off, a drip runs out of time."""
        assert self._loop is not None
        now = self._loop.time()
        earned = octets / self._min_data_rate
        self._deadline = min(
            self._deadline + earned, now + self._data_block_timeout, self._session_deadline
        )
        self._stress_deadline = min(
            self._stress_deadline + earned, now + self._stress_timeout, self._deadline
        )
        if self.wait_deadline:
            self.wait_deadline = self._deadline
            self.stress_deadline = self._stress_deadline

    async def _run(self) -> None:
        services = self.services
        cfg = services.config.smtp
        assert self._loop is not None
        self._session_deadline = self._loop.time() + cfg.session_timeout
        services.maillog.connect(self.ctx.session_id, self.ctx.peer_ip)
        if self.ctx.tls:  # implicit TLS: negotiated before the session started
            log_tls(self.services.maillog, self.ctx)
        try:
            await self._greet(cfg.greeting_delay)
            while True:
                step = self._handover or self._advance()
                self._handover = None
                if isinstance(step, Exception):
                    raise step
                if step is _Step.INPUT:
                    if not await self._wait_input(
                        self._deadline, self._stress_deadline, parked=True
                    ):
                        self._close_with(
                            codes.R421_MAKING_ROOM if self.closing_for_room else codes.R421_TIMEOUT
                        )
                        break
                elif step is _Step.SHUTDOWN:
                    self._close_with(codes.R421_SHUTTING_DOWN)
                    break
                elif step is _Step.ENDED:
                    break
                elif step is _Step.STARTTLS:
                    if not await self._upgrade_to_tls():
                        break
                    self._start_deadline()  # ready for EHLO once the handshake is done
                else:
                    assert isinstance(step, _Later)
                    answer = step.answer
                    outcome = answer if isinstance(answer, Outcome) else await answer
                    delay = self._tarpit_delay(outcome.reply)
                    if delay > 0 and not self._peer_gone:
                        # Postfix smtpd_error_sleep_time: slow down a client that errs
                        # (not one that has closed its side: _peer_left ends the sleep
                        # early, and there is nothing left to slow down).
                        await self._tarpit(delay)
                    # Written even if the peer has closed its side: it may still read
                    # (a half-close, as `nc -N` or ncat do after the whole dialog), and
                    # a stored message's 250 must not be held back.
                    self._reply(step.event, outcome)
                    if self._lost:
                        break
                    if self.conn.state is State.TLS:
                        if not await self._upgrade_to_tls():
                            break
                        self._start_deadline()
        except asyncio.CancelledError:
            if not self._lost and self.conn.state is not State.CLOSED:
                self._close_with(codes.R421_SHUTTING_DOWN)
        except Exception:
            log.exception("session %s failed", self.ctx.session_id)
            if not self._lost and self.conn.state is not State.CLOSED:
                self._close_with(codes.R421_LOCAL_ERROR)
        finally:
            self._discard_handover()
            self.handlers.abort_message()
            await self._close()
            services.maillog.disconnect(
                self.ctx.session_id,
                self.ctx.peer_ip,
                {"messages": self.handlers.messages, "errors": self.errors},
            )
            self._release_references()

    def _release_references(self) -> None:
        """Break the reference cycle a finished session sits in (transport <->
        protocol), so it is freed by reference counting at once.  Left to the cycle
        collector, a dead TLS session kept its SSL object and the transport's read
        buffer for a long while: RSS climbed under TLS load (bench/tls_load.py found
        it).  The handlers see the session through a view that does not point back."""
        self.transport = None

    @property
    def _open(self) -> bool:
        return (
            self.conn.state is not State.CLOSED and not self._lost and not self._close_after_reply
        )

    @property
    def _peer_gone(self) -> bool:
        """The peer closed its side (EOF) or the connection is lost.  After an EOF
        what the peer sent is still answered in order, as Postfix's smtpd does (a
        half-closed client, ``nc -N`` or ncat with a piped dialog, reads the replies),
        but with no tarpit delay, so a client that pipelined junk and left is through
        at CPU speed; once the connection is lost (a reset: nobody reads) nothing more
        is answered."""
        return self._lost or self.conn.peer_closed

    def _tarpit_delay(self, reply: Reply) -> float:
        """Seconds to wait before an error reply (Postfix smtpd_error_sleep_time)."""
        if reply.code < 400 or reply.code in (421, 521) or not reply.counts_as_error:
            return 0.0
        abuse = self.services.config.abuse
        excess = self.errors + 1 - abuse.tarpit_after
        if excess > 0 and abuse.tarpit_delay > 0:
            return min(abuse.tarpit_delay * excess, abuse.tarpit_max_delay)
        return 0.0

    def _discard_handover(self) -> None:
        """A session ending with a command not yet answered: close its coroutine."""
        step, self._handover = self._handover, None
        if isinstance(step, _Later) and asyncio.iscoroutine(step.answer):
            step.answer.close()

    async def _greet(self, delay: float) -> None:
        if delay > 0:
            await asyncio.sleep(delay)
        if delay > 0 and self.conn.early_talker:
            # RFC 5321 §4.3.1 / Postfix postscreen "pregreet": a client that talks
            # before a delayed greeting is a bot that does not wait for replies.
            # Without a delay it is most likely ``printf ... | nc``, which Postfix's
            # smtpd serves too: its commands are answered in turn after the 220.
            self._reply(None, _EARLY_TALKER)
            return
        verdict = self.services.pipeline.run_now(Stage.CONNECT, self.ctx)
        if not isinstance(verdict, Verdict):
            verdict = await verdict
        outcome = verdict_outcome(verdict, Outcome.of(self.listener.greeting))
        reply = outcome.reply
        if reply.is_permanent and reply.code != 554:
            # RFC 5321 §3.1: a server refusing a session greets with 554.
            outcome = Outcome(Reply(554, "5.7.1", reply.lines), outcome.reason, outcome.close)
        self._reply(None, outcome)

    async def _upgrade_to_tls(self) -> bool:
        """After the 220 to STARTTLS: flush what is owed, resume reading, and run the
        handshake (``starttls``); False when it failed and the session is over."""
        tls = self.services.tls
        transport = self.transport
        assert tls is not None and transport is not None
        self.flush()
        self.resume_reading()
        upgraded = await upgrade_to_tls(
            transport, self, tls, self.conn, self.ctx, self.services.maillog
        )
        if upgraded is None:
            self._lost = True
            return False
        self.transport = upgraded
        return True

    def _reply(self, event: object, outcome: Outcome) -> None:
        """The one place replies are written, logged and counted."""
        reply = outcome.reply
        if outcome.close:
            self._close_after_reply = True
        if reply.code >= 400:
            cfg = self.services.config.smtp
            self.errors += reply.counts_as_error
            max_errors = cfg.max_errors
            if self.listener.stressed:
                max_errors = min(max_errors, STRESS_MAX_ERRORS)
            if reply.counts_as_error and self.errors >= max_errors and reply.code not in (421, 521):
                # Postfix smtpd_hard_error_limit: the reply to the last straw is 421.
                self._log_rejection(event, reply, outcome.reason)
                reply = codes.R421_TOO_MANY_ERRORS
                self._log_rejection(event, reply, "")
            else:
                self._log_rejection(event, reply, outcome.reason)
        self._out.append(self.conn.send(reply))
        self._start_deadline()  # ready for the next command, or for DATA's body
        if reply.code == 221 and type(event) is Quit:
            self.quit_answered = True
            if (
                self.conn.buffered == 0
                and not self.conn.tls_active
                and self.transport is not None
                and _CORK is not None
            ):
                # The session ends with this reply: hold it (TCP_CORK) so close() sends
                # it and the FIN in one segment: one packet and one wake-up of the
                # client fewer per session.  Not under TLS: the TLS close waits for
                # the peer's close_notify, which would wait for our corked bytes.
                sock = self.transport.get_extra_info("socket")
                if sock is not None:
                    with contextlib.suppress(OSError):
                        sock.setsockopt(socket.IPPROTO_TCP, _CORK, 1)
        if self.conn.buffered == 0 or self.conn.state is State.CLOSED or self._close_after_reply:
            self.flush()

    def _log_rejection(self, event: object, reply: Reply, reason: str) -> None:
        log_rejection(self.services.maillog, self.ctx, self.conn, event, reply, reason)

    def _close_with(self, reply: Reply) -> None:
        self.errors += reply.code >= 400
        self._out.append(self.conn.close_with(reply))
        self.flush()

    def resume_reading(self) -> None:
        """Undo the pipelining back-pressure (``data_received``), if it is on."""
        if self._reading_paused and self.transport is not None:
            self._reading_paused = False
            self.transport.resume_reading()

    def flush(self) -> None:
        if self._out and self.transport is not None and not self._lost:
            self.transport.write(b"".join(self._out))
        self._out.clear()

    def wake(self) -> None:
        """Resume the session task if it is waiting (input, EOF, timeout, shutdown)."""
        self._parked = False  # the task runs next: no fast path until it waits again
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def _peer_left(self) -> None:
        """EOF or connection lost: a tarpit sleep ends at once, and no new one starts
        (_peer_gone); a lost connection also ends the session (_open)."""
        self.wake()
        sleeper = self._sleeper
        if sleeper is not None and not sleeper.done():
            sleeper.set_result(None)

    async def _tarpit(self, delay: float) -> None:
        """Sleep ``delay`` seconds, or until the peer goes away."""
        assert self._loop is not None
        self._sleeper = sleeper = self._loop.create_future()
        try:
            await asyncio.wait([sleeper], timeout=delay)
        finally:
            self._sleeper = None

    async def _wait_input(
        self, deadline: float, stress_deadline: float, *, parked: bool = False
    ) -> bool:
        """Wait for more input until ``deadline`` (loop time; ``stress_deadline`` in
        stress mode); False on timeout or when the session must make room.
        ``parked``: waiting for a command, which data_received may then answer itself
        (the fast path)."""
        self.flush()
        loop = self._loop
        assert loop is not None
        if self._writable is not None:
            # The client is not reading our replies: wait before reading more.
            try:
                async with asyncio.timeout(max(deadline - loop.time(), 0)):
                    await self._writable
            except TimeoutError:
                return False
        self.resume_reading()
        self.wait_deadline = deadline
        self.stress_deadline = stress_deadline
        self._waiter = loop.create_future()
        self._parked = parked
        try:
            await self._waiter
        finally:
            self._parked = False
            self._waiter = None
            self.wait_deadline = self.stress_deadline = 0.0
        return not self.timed_out and not self.closing_for_room

    async def _close(self) -> None:
        self.flush()
        transport = self.transport
        if transport is None or self._lost:
            return
        if self.quit_answered and self.conn.buffered == 0:
            # RFC 5321 §4.1.1.10: after the 221 the server closes.  Nothing unread is
            # left, so close() cannot turn into a reset that destroys the 221: no
            # half-close and linger needed (a syscall and a wake-up saved per session).
            transport.close()
            return
        if transport.can_write_eof():
            with contextlib.suppress(OSError):  # the peer may be gone already
                transport.write_eof()
            # Linger: discard whatever the peer still sends until it closes or the
            # bound expires, so it sees our last reply rather than a reset.
            deadline = asyncio.get_running_loop().time() + LINGER_SECONDS
            while not self._peer_gone:
                if not await self._wait_input(deadline, deadline):
                    break
        transport.close()


_EARLY_TALKER = Outcome(codes.R554_EARLY_TALKER, "early talker: data sent before greeting")
# Waiting for a command in these states is idle (see InboundSession.idle).
_IDLE_STATES = frozenset({State.NEED_HELO, State.READY, State.AUTH})
