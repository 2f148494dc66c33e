"""Command handlers of an inbound session: each takes an event and *returns* its whole
outcome (``outcome.Outcome``: the reply, the reason to log, whether to close).

Handlers never write to the wire, log refusals or count; the session does all three
in one place (DESIGN principle 5, chasquid's ``(code, msg)`` handlers).  They see the
session only through ``view.SessionView``.  Dispatch is an explicit dict from event
type to method (principle 6).

A handler returns an ``Answer``: the ``Outcome`` itself when it could decide at once
(no policy hook to wait for: ``Pipeline.run_now``), else an awaitable of it.  The
session answers the first kind straight from ``data_received``, without waking its
task; the second kind (storing a message, AUTH, a coroutine hook) goes to the task.
The common outcomes are module constants, so answering a command allocates nothing
the reply alone did not.

The end of a message (``_finish``, after the last body byte and before the spool
commit) runs the MESSAGE stage with a ``policy.message.MessageTransaction``: the
header section kept while the body streamed in (``HeaderCollector``), the envelope
and the size.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

from mailwright.config import VrfyMode
from mailwright.net.inbound.auth import AuthExchange, offered_mechanisms
from mailwright.net.inbound.outcome import Answer, Outcome, verdict_outcome
from mailwright.net.inbound.received import protocol_name, received_header
from mailwright.net.inbound.view import SessionView
from mailwright.policy.builtin.from_header import HeaderCollector
from mailwright.policy.builtin.missing_headers import HeaderSectionHold
from mailwright.policy.builtin.recipients import envelope_recipient
from mailwright.policy.message import MessageTransaction
from mailwright.policy.pipeline import Stage
from mailwright.policy.verdict import Verdict
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

log = logging.getLogger(__name__)

R = Reply.of
_HELP = Outcome.of(R(214, "2.0.0", "Commands supported:", " ".join(COMMANDS), "See RFC 5321"))
_SENDER_OK = Outcome.of(codes.R250_SENDER_OK)
_RECIPIENT_OK = Outcome.of(codes.R250_RECIPIENT_OK)
_START_DATA = Outcome.of(codes.R354_START_DATA)
_RESET = Outcome.of(codes.R250_RESET)
_OK = Outcome.of(codes.R250_OK)
_BYE = Outcome.of(codes.R221_BYE)
_VRFY_DISABLED = Outcome.of(codes.R502_VRFY_DISABLED)
_CANNOT_VRFY = Outcome.of(codes.R252_CANNOT_VRFY)
_NO_SUCH_USER = Outcome.of(codes.R550_NO_SUCH_USER)
_EXPN_DISABLED = Outcome.of(codes.R502_EXPN_DISABLED)
_NO_SUCH_LIST = Outcome.of(codes.R550_NO_SUCH_LIST)
_STARTTLS_UNAVAILABLE = Outcome.of(codes.R502_STARTTLS_UNAVAILABLE)
_STARTTLS_READY = Outcome.of(codes.R220_STARTTLS_READY)
_BARE_LINE_ENDING = Outcome(
    codes.R521_BARE_LINE_ENDING, "bare CR or LF in message data (SMTP smuggling defence)"
)
_NUL_IN_DATA = Outcome(codes.R554_NUL_IN_DATA, "NUL in message data outside BINARYMIME")


class Handlers:
    """The per-session command handlers and the message being received; the session
    state they read is behind ``view``."""

    def __init__(self, view: SessionView) -> None:
        self.v = view
        self.auth = AuthExchange(view)
        self.writer: MessageWriter | None = None
        # Set while a message streams in when the MESSAGE stage has hooks: keeps the
        # header section they read.
        self.header_section: HeaderCollector | None = None
        # Set while a message streams in on a submission listener: holds its header
        # section until Date:/Message-ID: can be added if missing (RFC 6409 §8).
        self.header_hold: HeaderSectionHold | None = None
        # The DATA stage passed for the BDAT message in progress (see ``bdat``).
        self.bdat_admitted = False
        # Why storing the message in progress failed (the reason its 451 logs), or
        # None: the body is read on to its end and nothing is stored.
        self.store_error: str | None = None
        self.messages = 0  # stored in this session, for the disconnect line

    def dispatch(self, event: Event) -> Answer:
        """The handler for ``event``'s type (an explicit table: DESIGN principle 6)."""
        return _DISPATCH[type(event)](self, event)

    # -- session commands ------------------------------------------------------------

    def _stage(self, stage: Stage, positive: Outcome, *args: object) -> Answer:
        verdict = self.v.services.pipeline.run_now(stage, self.v.ctx, *args)
        if isinstance(verdict, Verdict):
            return verdict_outcome(verdict, positive)
        return self._decide_later(verdict, positive)

    async def _decide_later(self, verdict: Awaitable[Verdict], positive: Outcome) -> Outcome:
        return verdict_outcome(await verdict, positive)

    def helo(self, event: Event) -> Answer:
        assert isinstance(event, Helo)
        self.abort_message()
        self.v.ctx.helo = event.domain
        return self._stage(Stage.HELO, Outcome.of(self.v.services.helo_reply), event)

    def ehlo(self, event: Event) -> Answer:
        assert isinstance(event, Ehlo)
        self.abort_message()
        v = self.v
        v.ctx.helo = event.domain
        extensions = v.services.server_options.extensions
        if v.starttls_available:
            extensions = extensions | {"STARTTLS"}
        mechanisms = offered_mechanisms(v)
        if mechanisms:
            extensions = extensions | {"AUTH"}
        # What we advertise is what the parser accepts (RFC 1869 §4: parameters of an
        # extension not offered are refused with 555).
        v.core.extensions = extensions
        # A handful of distinct EHLO replies exist, each built once and cached by the
        # services for the server's life: so is its outcome.
        positive = Outcome.of(v.services.ehlo_reply(extensions, tuple(mechanisms)))
        return self._stage(Stage.HELO, positive, event)

    def mail(self, event: Event) -> Answer:
        return self._stage(Stage.MAIL, _SENDER_OK, event)

    def rcpt(self, event: Event) -> Answer:
        return self._stage(Stage.RCPT, _RECIPIENT_OK, event)

    def rset(self, event: Event) -> Answer:
        self.abort_message()
        return _RESET

    def noop(self, event: Event) -> Answer:
        return _OK

    def quit(self, event: Event) -> Answer:
        self.abort_message()
        return _BYE

    def help(self, event: Event) -> Answer:
        return _HELP

    def vrfy(self, event: Event) -> Answer:
        assert isinstance(event, Vrfy)
        mode = self.v.services.config.smtp.vrfy
        if mode is VrfyMode.OFF:
            return _VRFY_DISABLED
        if mode is VrfyMode.AMBIGUOUS:
            # RFC 5321 §3.5.3: 252 neither confirms nor denies, so VRFY cannot be
            # used to harvest addresses.
            return _CANNOT_VRFY
        mailboxes = self._lookup(event.argument)
        if not mailboxes:
            return _NO_SUCH_USER
        return Outcome(R(250, "2.1.5", f"<{mailboxes[0]}>"))

    def expn(self, event: Event) -> Answer:
        assert isinstance(event, Expn)
        if not self.v.services.config.smtp.expn:
            return _EXPN_DISABLED
        mailboxes = self._lookup(event.argument)
        if not mailboxes:
            return _NO_SUCH_LIST
        return Outcome(Reply(250, "2.1.5", tuple(f"<{m}>" for m in mailboxes)))

    def _lookup(self, argument: str) -> list[str]:
        text = argument.strip().removeprefix("<").removesuffix(">")
        if "@" not in text:
            domains = self.v.services.config.domains
            if not domains:
                return []
            text = f"{text}@{domains[0].name}"
        resolved = self.v.services.directory.resolve(text)
        return [m.address for m in resolved or ()]

    def starttls(self, event: Event) -> Answer:
        # Offered only with a certificate and never on the implicit-TLS role (RFC 3207
        # §4: a server offers STARTTLS only when it can complete it).  A 220 here puts
        # the core in its TLS state; the session loop then runs the handshake.
        if not self.v.starttls_available:
            return _STARTTLS_UNAVAILABLE
        return _STARTTLS_READY

    async def auth_start(self, event: Event) -> Outcome:
        assert isinstance(event, Auth)
        return await self.auth.start(event)

    async def auth_response(self, event: Event) -> Outcome:
        assert isinstance(event, AuthResponse)
        return await self.auth.respond(event)

    def command_error(self, event: Event) -> Answer:
        assert isinstance(event, CommandError)
        return Outcome(event.reply)

    # -- message data --------------------------------------------------------------

    def abort_message(self) -> None:
        self.header_section = None
        self.header_hold = None
        self.bdat_admitted = False
        if self.writer is not None:
            self.writer.abort()
            self.writer = None

    def _open_message(self) -> MessageWriter:
        """Start the spool body and write our Received header first (RFC 5321 §4.4)."""
        if self.writer is None:
            v = self.v
            core = v.core
            writer = v.services.spool.new_message()
            txn = core.transaction
            mail = txn.mail
            header = received_header(
                helo=v.ctx.helo or "",
                peer_ip=v.ctx.peer_ip,
                hostname=v.hostname,
                protocol=protocol_name(
                    esmtp=core.esmtp,
                    tls=core.tls_active,
                    authenticated=core.authenticated,
                    smtputf8=bool(mail and mail.params.smtputf8),
                ),
                queue_id=writer.queue_id,
                recipient=str(txn.rcpts[0].address) if len(txn.rcpts) == 1 else None,
                tls_info=v.ctx.tls,
            )
            writer.write(header)
            self.writer = writer
            if v.services.pipeline.hooks(Stage.MESSAGE):
                self.header_section = HeaderCollector()
            if v.listener.is_submission:
                self.header_hold = HeaderSectionHold(hostname=v.hostname, queue_id=writer.queue_id)
        return self.writer

    def data(self, event: Event) -> Answer:
        answer = self._stage(Stage.DATA, _START_DATA, event)
        if isinstance(answer, Outcome):
            return self._start_data(answer)
        return self._start_data_later(answer)

    async def _start_data_later(self, answer: Awaitable[Outcome]) -> Outcome:
        return self._start_data(await answer)

    def _start_data(self, outcome: Outcome) -> Outcome:
        if outcome.reply.code == 354:
            try:
                self._open_message()
            except SpoolError as exc:
                return Outcome(codes.R451_LOCAL_ERROR, f"spool: {exc}")
        return outcome

    def write_chunk(self, data: bytes) -> None:
        """Append a DataChunk; a failing write turns into 451 at the end of data."""
        if self.store_error is not None:
            return  # already failed: read on to the end of the data, store nothing
        try:
            writer = self._open_message()
            hold = self.header_hold
            out = data if hold is None else hold.feed(data)
            if out:
                writer.write(out)
        except SpoolError as exc:
            self.abort_message()
            self.store_error = f"spool: {exc}"
            return
        if self.header_section is not None:  # created by _open_message, BDAT included
            self.header_section.feed(data)

    def _store_failed(self) -> Outcome:
        """The 451 for a message whose storing failed; the next one starts afresh."""
        reason, self.store_error = self.store_error, None
        return Outcome(codes.R451_LOCAL_ERROR, reason or "")

    async def end_of_data(self, event: Event) -> Outcome:
        assert isinstance(event, EndOfData)
        return await self._finish(event.error, event.size)

    async def bdat(self, event: Event) -> Outcome:
        assert isinstance(event, Bdat)
        v = self.v
        if event.error is None and not self.bdat_admitted:
            # BDAT has no DATA command: the DATA stage (free space...) runs at the
            # first chunk, so no message gets past it by choosing BDAT.
            verdict = await v.services.pipeline.run(Stage.DATA, v.ctx, event)
            outcome = verdict_outcome(verdict, _OK)
            if not outcome.reply.is_positive:
                self.abort_message()
                return outcome
            self.bdat_admitted = True
        if event.error is not None or event.last:
            return await self._finish(event.error, v.core.transaction.bdat_size)
        if self.store_error is None:
            try:
                self._open_message()
            except SpoolError as exc:
                self.store_error = f"spool: {exc}"
        if self.store_error is not None:
            # RFC 3030 §2: a failed chunk fails the transaction.
            return self._store_failed()
        return Outcome(R(250, "2.0.0", f"{event.size} octets received"))

    async def _finish(self, error: DataError | None, size: int) -> Outcome:
        """After the last body byte, before the spool commit: refuse what the core
        found wrong with the data, then check and store the message."""
        v = self.v
        self.bdat_admitted = False
        if error is DataError.BARE_LINE_ENDING:
            self.abort_message()
            return _BARE_LINE_ENDING
        if error is DataError.NUL:
            self.abort_message()
            return _NUL_IN_DATA
        if error is DataError.TOO_BIG:
            self.abort_message()
            reason = f"message larger than {v.services.config.smtp.max_message_size}"
            return Outcome(codes.R552_TOO_BIG, reason)
        if self.store_error is not None:
            return self._store_failed()
        envelope = self._envelope()
        writer = self._open_message()  # a BDAT LAST with no chunk before opens it here
        header_block = b""
        if self.header_section is not None:
            collector, self.header_section = self.header_section, None
            txn = MessageTransaction(envelope, collector.headers, size)
            verdict = await v.services.pipeline.run(Stage.MESSAGE, v.ctx, txn)
            outcome = verdict_outcome(verdict, _OK)
            if not outcome.reply.is_positive:
                self.abort_message()
                return outcome
            # Stored with the spool row and prepended on read, above our Received
            # (RFC 8601 §5, RFC 7208 §9.1): the body file stays write-once.
            header_block = txn.header_block
        self.writer = None
        hold, self.header_hold = self.header_hold, None
        try:
            if hold is not None and (rest := hold.finish()):
                writer.write(rest)  # a message without a body: all of it was held
            # Durable before 250: put() returns only after fsync of body, directory
            # and the queue database (DESIGN principle 3).
            message = await v.services.spool.put(writer, envelope, header_block)
        except SpoolError as exc:
            writer.abort()
            return Outcome(codes.R451_LOCAL_ERROR, f"spool: {exc}")
        except BaseException:
            writer.abort()
            raise
        v.services.maillog.accepted(
            message.queue_id,
            envelope.mail_from,
            message.size,
            [r.address for r in envelope.recipients],
            v.ctx.peer_ip,
            v.ctx.session_id,
            helo=v.ctx.helo,
        )
        self.messages += 1
        body = writer.body_bytes()
        v.services.on_queued(message, None if body is None else header_block + body)
        return Outcome(R(250, "2.0.0", f"Ok: queued as {message.queue_id}"))

    def _envelope(self) -> Envelope:
        v = self.v
        txn = v.core.transaction
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
            client_address=v.ctx.peer_ip,
            client_helo=v.ctx.helo or "",
            auth_user=v.ctx.auth_user,
        )

    def _recipient(self, rcpt: RcptTo) -> Recipient:
        address = envelope_recipient(rcpt.address, self.v.ctx.local_ip)
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
    Auth: Handlers.auth_start,
    AuthResponse: Handlers.auth_response,
    CommandError: Handlers.command_error,
}
