"""Command handlers of an inbound session: each takes an event and *returns* a reply.

Handlers never write to the wire, log or count; ``InboundSession`` does all three in
one place (DESIGN principle 5, chasquid's ``(code, msg)`` handlers).  Dispatch is an
explicit dict from event type to method (principle 6).

A handler returns an ``Answer``: the ``Reply`` itself when it could decide at once (no
policy hook to wait for: ``Pipeline.run_now``), else an awaitable of it.  The session
answers the first kind straight from ``data_received``, without waking its task; the
second kind (storing a message, AUTH, a coroutine hook) goes to the task.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from mailwright.config import VrfyMode
from mailwright.net.inbound.auth import offered_mechanisms
from mailwright.net.inbound.received import protocol_name, received_header
from mailwright.policy.builtin.from_header import (
    R553_FROM_NOT_OWNED,
    HeaderCollector,
    check_from_header,
)
from mailwright.policy.builtin.missing_headers import HeaderSectionHold
from mailwright.policy.builtin.recipients import envelope_recipient
from mailwright.policy.pipeline import Stage
from mailwright.policy.verdict import Accept, Continue, Disconnect, Reject, TempFail, Verdict
from mailwright.smtp import (
    COMMANDS,
    Auth,
    AuthResponse,
    Bdat,
    CommandError,
    Data,
    DataError,
    Ehlo,
    EndOfData,
    Event,
    Expn,
    Helo,
    Help,
    MailFrom,
    Noop,
    Quit,
    RcptTo,
    Reply,
    Rset,
    StartTls,
    Vrfy,
    codes,
)
from mailwright.spool.model import BodyType, Envelope, Recipient
from mailwright.spool.store import MessageWriter, SpoolError

if TYPE_CHECKING:
    from mailwright.net.inbound.session import InboundSession

log = logging.getLogger(__name__)

Answer = Reply | Awaitable[Reply]

R = Reply.of
_HELP = R(214, "2.0.0", "Commands supported:", " ".join(COMMANDS), "See RFC 5321")


def verdict_reply(verdict: Verdict, positive: Reply) -> tuple[Reply, str]:
    """The reply for a stage's verdict, and the private reason for the log."""
    match verdict:
        case Continue():
            return positive, ""
        case Accept(reply):
            return reply or positive, ""
        case Reject(reply, reason) | TempFail(reply, reason) | Disconnect(reply, reason):
            return reply, reason
    raise TypeError(f"not a verdict: {verdict!r}")  # pragma: no cover


class Handlers:
    """The per-session command handlers; state lives in the session and its core."""

    def __init__(self, session: InboundSession) -> None:
        self.s = session
        self.writer: MessageWriter | None = None
        # Set while a message streams in on a listener that checks From: headers.
        self.from_headers: HeaderCollector | None = None
        # Set while a message streams in on a submission listener: holds its header
        # section until Date:/Message-ID: can be added if missing (RFC 6409 §8).
        self.header_hold: HeaderSectionHold | None = None
        # The DATA stage passed for the BDAT message in progress (see ``bdat``).
        self.bdat_admitted = False

    def dispatch(self, event: Event) -> Answer:
        """The handler for ``event``'s type (an explicit table: DESIGN principle 6)."""
        return _DISPATCH[type(event)](self, event)

    # -- session commands ------------------------------------------------------------

    def _stage(self, stage: Stage, positive: Reply, *args: object) -> Answer:
        verdict = self.s.services.pipeline.run_now(stage, self.s.ctx, *args)
        if isinstance(verdict, Verdict):
            return self._decide(verdict, positive)
        return self._decide_later(verdict, positive)

    async def _decide_later(self, verdict: Awaitable[Verdict], positive: Reply) -> Reply:
        return self._decide(await verdict, positive)

    def _decide(self, verdict: Verdict, positive: Reply) -> Reply:
        reply, reason = verdict_reply(verdict, positive)
        if isinstance(verdict, Disconnect):
            self.s.close_after_reply = True
        if not reply.is_positive:
            self.s.reject_reason = reason
        return reply

    def helo(self, event: Event) -> Answer:
        assert isinstance(event, Helo)
        self.abort_message()
        self.s.ctx.helo = event.domain
        return self._stage(Stage.HELO, self.s.services.helo_reply, event)

    def ehlo(self, event: Event) -> Answer:
        assert isinstance(event, Ehlo)
        self.abort_message()
        s = self.s
        s.ctx.helo = event.domain
        extensions = s.services.server_options.extensions
        if s.starttls_available:
            extensions = extensions | {"STARTTLS"}
        mechanisms = offered_mechanisms(s)
        if mechanisms:
            extensions = extensions | {"AUTH"}
        # What we advertise is what the parser accepts (RFC 1869 §4: parameters of an
        # extension not offered are refused with 555).
        s.conn.extensions = extensions
        positive = s.services.ehlo_reply(extensions, tuple(mechanisms))
        return self._stage(Stage.HELO, positive, event)

    def mail(self, event: Event) -> Answer:
        return self._stage(Stage.MAIL, codes.R250_SENDER_OK, event)

    def rcpt(self, event: Event) -> Answer:
        return self._stage(Stage.RCPT, codes.R250_RECIPIENT_OK, event)

    def rset(self, event: Event) -> Answer:
        self.abort_message()
        return codes.R250_RESET

    def noop(self, event: Event) -> Answer:
        return codes.R250_OK

    def quit(self, event: Event) -> Answer:
        self.abort_message()
        return codes.R221_BYE

    def help(self, event: Event) -> Answer:
        return _HELP

    def vrfy(self, event: Event) -> Answer:
        assert isinstance(event, Vrfy)
        mode = self.s.services.config.smtp.vrfy
        if mode is VrfyMode.OFF:
            return codes.R502_VRFY_DISABLED
        if mode is VrfyMode.AMBIGUOUS:
            # RFC 5321 §3.5.3: 252 neither confirms nor denies, so VRFY cannot be
            # used to harvest addresses.
            return codes.R252_CANNOT_VRFY
        mailboxes = self._lookup(event.argument)
        if not mailboxes:
            return codes.R550_NO_SUCH_USER
        return R(250, "2.1.5", f"<{mailboxes[0]}>")

    def expn(self, event: Event) -> Answer:
        assert isinstance(event, Expn)
        if not self.s.services.config.smtp.expn:
            return codes.R502_EXPN_DISABLED
        mailboxes = self._lookup(event.argument)
        if not mailboxes:
            return R(550, "5.1.1", "No such list or address")
        return Reply(250, "2.1.5", tuple(f"<{m}>" for m in mailboxes))

    def _lookup(self, argument: str) -> list[str]:
        text = argument.strip().removeprefix("<").removesuffix(">")
        if "@" not in text:
            domains = self.s.services.config.domains
            if not domains:
                return []
            text = f"{text}@{domains[0].name}"
        resolved = self.s.services.directory.resolve(text)
        return [m.address for m in resolved or ()]

    def starttls(self, event: Event) -> Answer:
        # Offered only with a certificate and never on the implicit-TLS role (RFC 3207
        # §4: a server offers STARTTLS only when it can complete it).  A 220 here puts
        # the core in its TLS state; the session loop then runs the handshake.
        if not self.s.starttls_available:
            return R(502, "5.5.1", "STARTTLS not available")
        return R(220, "2.0.0", "Ready to start TLS")

    async def auth(self, event: Event) -> Reply:
        assert isinstance(event, Auth)
        return await self.s.auth.start(event)

    async def auth_response(self, event: Event) -> Reply:
        assert isinstance(event, AuthResponse)
        return await self.s.auth.respond(event)

    def command_error(self, event: Event) -> Answer:
        assert isinstance(event, CommandError)
        return event.reply

    # -- message data --------------------------------------------------------------

    def abort_message(self) -> None:
        self.from_headers = None
        self.header_hold = None
        self.bdat_admitted = False
        if self.writer is not None:
            self.writer.abort()
            self.writer = None

    def _open_message(self) -> MessageWriter:
        """Start the spool body and write our Received header first (RFC 5321 §4.4)."""
        if self.writer is None:
            s = self.s
            writer = s.services.spool.new_message()
            txn = s.conn.transaction
            mail = txn.mail
            header = received_header(
                helo=s.ctx.helo or "",
                peer_ip=s.ctx.peer_ip,
                hostname=s.hostname,
                protocol=protocol_name(
                    esmtp=s.conn.esmtp,
                    tls=s.conn.tls_active,
                    authenticated=s.conn.authenticated,
                    smtputf8=bool(mail and mail.params.smtputf8),
                ),
                queue_id=writer.queue_id,
                recipient=str(txn.rcpts[0].address) if len(txn.rcpts) == 1 else None,
                tls_info=s.ctx.tls,
            )
            writer.write(header)
            self.writer = writer
            if s.listener_config.from_header_match and s.ctx.auth_user is not None:
                self.from_headers = HeaderCollector()
            if s.listener_config.is_submission:
                self.header_hold = HeaderSectionHold(hostname=s.hostname, queue_id=writer.queue_id)
        return self.writer

    def data(self, event: Event) -> Answer:
        answer = self._stage(Stage.DATA, codes.R354_START_DATA, event)
        if isinstance(answer, Reply):
            return self._start_data(answer)
        return self._start_data_later(answer)

    async def _start_data_later(self, answer: Awaitable[Reply]) -> Reply:
        return self._start_data(await answer)

    def _start_data(self, reply: Reply) -> Reply:
        if reply.code == 354:
            try:
                self._open_message()
            except SpoolError as exc:
                self.s.reject_reason = f"spool: {exc}"
                return codes.R451_LOCAL_ERROR
        return reply

    def write_chunk(self, data: bytes) -> None:
        """Append a DataChunk; a failing write turns into 451 at the end of data."""
        if self.s.store_failed:
            return  # already failed: read on to the end of the data, store nothing
        try:
            writer = self._open_message()
            hold = self.header_hold
            out = data if hold is None else hold.feed(data)
            if out:
                writer.write(out)
        except SpoolError as exc:
            self.s.reject_reason = f"spool: {exc}"
            self.abort_message()
            self.s.store_failed = True
            return
        if self.from_headers is not None:  # created by _open_message, BDAT included
            self.from_headers.feed(data)

    async def end_of_data(self, event: Event) -> Reply:
        assert isinstance(event, EndOfData)
        return await self._finish(event.error, event.size)

    async def bdat(self, event: Event) -> Reply:
        assert isinstance(event, Bdat)
        if event.error is None and not self.bdat_admitted:
            # BDAT has no DATA command: the DATA stage (free space...) runs at the
            # first chunk, so no message gets past it by choosing BDAT.
            verdict = await self.s.services.pipeline.run(Stage.DATA, self.s.ctx, event)
            reply = self._decide(verdict, codes.R250_OK)
            if not reply.is_positive:
                self.abort_message()
                return reply
            self.bdat_admitted = True
        if event.error is not None or event.last:
            return await self._finish(event.error, self.s.conn.transaction.bdat_size)
        if not self.s.store_failed:
            try:
                self._open_message()
            except SpoolError as exc:
                self.s.reject_reason = f"spool: {exc}"
                self.s.store_failed = True
        if self.s.store_failed:
            # RFC 3030 §2: a failed chunk fails the transaction.
            self.s.store_failed = False
            return codes.R451_LOCAL_ERROR
        return R(250, "2.0.0", f"{event.size} octets received")

    async def _finish(self, error: DataError | None, size: int) -> Reply:
        s = self.s
        self.bdat_admitted = False
        if error is DataError.BARE_LINE_ENDING:
            self.abort_message()
            s.reject_reason = "bare CR or LF in message data (SMTP smuggling defence)"
            return codes.R521_BARE_LINE_ENDING
        if error is DataError.NUL:
            self.abort_message()
            s.reject_reason = "NUL in message data outside BINARYMIME"
            return codes.R554_NUL_IN_DATA
        if error is DataError.TOO_BIG:
            self.abort_message()
            s.reject_reason = f"message larger than {s.services.config.smtp.max_message_size}"
            return codes.R552_TOO_BIG
        if s.store_failed:
            s.store_failed = False
            return codes.R451_LOCAL_ERROR
        if self.from_headers is not None:
            collector, self.from_headers = self.from_headers, None
            users = s.services.users
            if users is not None and s.ctx.auth_user is not None:
                problem = check_from_header(users, s.ctx.auth_user, collector.headers)
                if problem is not None:
                    self.abort_message()
                    s.reject_reason = problem
                    return R553_FROM_NOT_OWNED
        writer = self._open_message()
        self.writer = None
        hold, self.header_hold = self.header_hold, None
        envelope = self._envelope()
        try:
            if hold is not None and (rest := hold.finish()):
                writer.write(rest)  # a message without a body: all of it was held
            # Durable before 250: put() returns only after fsync of body, directory
            # and the queue database (DESIGN principle 3).
            message = await s.services.spool.put(writer, envelope)
        except SpoolError as exc:
            writer.abort()
            s.reject_reason = f"spool: {exc}"
            return codes.R451_LOCAL_ERROR
        except BaseException:
            writer.abort()
            raise
        s.services.maillog.accepted(
            message.queue_id,
            envelope.mail_from,
            message.size,
            [r.address for r in envelope.recipients],
            s.ctx.peer_ip,
            s.ctx.session_id,
            helo=s.ctx.helo,
        )
        s.messages += 1
        s.services.on_queued(message, writer.body_bytes())
        return R(250, "2.0.0", f"Ok: queued as {message.queue_id}")

    def _envelope(self) -> Envelope:
        s = self.s
        txn = s.conn.transaction
        mail = txn.mail
        assert mail is not None
        params = mail.params
        body = BodyType(params.body) if params.body else BodyType.SEVEN_BIT
        return Envelope(
            mail_from="" if mail.address is None else str(mail.address),
            recipients=tuple(self._recipient(r) for r in txn.rcpts),
            body_type=body,
            smtputf8=params.smtputf8,
            ret=params.ret,
            envid=params.envid,
            client_address=s.ctx.peer_ip,
            client_helo=s.ctx.helo or "",
            auth_user=s.ctx.auth_user,
        )

    def _recipient(self, rcpt: RcptTo) -> Recipient:
        address = envelope_recipient(rcpt.address, self.s.ctx.local_ip)
        orcpt = rcpt.params.orcpt
        if orcpt is None and address != str(rcpt.address):
            # Stored under another address (postmaster@[our IP]): keep what the client
            # wrote as ORCPT, which is what RFC 3461 §4.2 has it for.
            orcpt = f"rfc822;{rcpt.address}"
        return Recipient(address, rcpt.params.notify, orcpt)


# Built once, not per session: unbound methods, called with the session's Handlers.
_DISPATCH: dict[type, Callable[[Handlers, Event], Answer]] = {
    Helo: Handlers.helo,
    Ehlo: Handlers.ehlo,
    MailFrom: Handlers.mail,
    RcptTo: Handlers.rcpt,
    Data: Handlers.data,
    EndOfData: Handlers.end_of_data,
    Bdat: Handlers.bdat,
    Rset: Handlers.rset,
    Noop: Handlers.noop,
    Quit: Handlers.quit,
    Vrfy: Handlers.vrfy,
    Expn: Handlers.expn,
    Help: Handlers.help,
    StartTls: Handlers.starttls,
    Auth: Handlers.auth,
    AuthResponse: Handlers.auth_response,
    CommandError: Handlers.command_error,
}
