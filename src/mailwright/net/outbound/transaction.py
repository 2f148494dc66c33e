"""One mail transaction on an open client connection: MAIL, RCPTs, then DATA or BDAT.

Before anything is written, the message is checked against what the peer offered, and
refused locally (permanently, for every recipient, the connection left as it was):

* SMTPUTF8 needed but not offered: 553 5.6.7 (RFC 6531 §3.2 forbids sending it).
* larger than the peer's SIZE: 552 5.3.4 (RFC 1870 §6.1: do not send it).
* a NUL outside BINARYMIME: 554 5.6.0 (RFC 2045 §2.7-2.8; DESIGN "sending side").
* 8-bit content for a peer without 8BITMIME, or binary content for one without
  BINARYMIME+CHUNKING: converted to 7-bit MIME (``downgrade``, RFC 6152 §3, RFC 3030
  §3); where that is impossible 554 5.6.3 naming the reason.

Extensions are used when offered: SIZE=n on MAIL (RFC 1870), BODY=8BITMIME (RFC 6152)
or BODY=BINARYMIME (RFC 3030, with CHUNKING only), SMTPUTF8 (RFC 6531), RET/ENVID on
MAIL and NOTIFY/ORCPT on RCPT only when the peer offers DSN (RFC 3461 §4; the result
says so per recipient), PIPELINING (RFC 2920: MAIL, every RCPT and DATA in one write)
and CHUNKING (RFC 3030: BDAT chunks of ``BDAT_CHUNK_SIZE``, pipelined).

Replies decide: a refused MAIL is every recipient's reply; a refused RCPT is that
recipient's; when no RCPT was accepted no body is sent (a pipelined DATA is refused by
the peer, 503/554, RFC 2920 §3.1) and RSET closes the transaction; a refused DATA is
the reply of every accepted recipient.  After the data each accepted recipient gets
the final reply, or for LMTP its own (RFC 2033 §4.2).  A connection that fails in the
middle (drop, timeout, garbage, 421) leaves every recipient without a reply of its own
with a temporary one (RFC 5321 §6.1: a drop after the dot means not delivered).
"""

from __future__ import annotations

from collections.abc import Iterator

from mailwright.net.outbound.channel import Channel, ChannelError
from mailwright.net.outbound.downgrade import DowngradeError, to_seven_bit
from mailwright.net.outbound.model import (
    ClientSettings,
    OutgoingMessage,
    RecipientResult,
    SessionInfo,
    Stage,
    TransactionResult,
)
from mailwright.smtp import (
    Address,
    AddressError,
    Auth,
    AuthResponse,
    Bdat,
    Data,
    DataChunk,
    EndOfData,
    Event,
    MailFrom,
    MailParams,
    Quit,
    RcptParams,
    RcptTo,
    Reply,
    Rset,
    State,
    codes,
    normalize_line_endings,
    parse_path,
    to_ascii_domain,
    write_command,
)
from mailwright.spool.model import BodyType

# Octets per BDAT chunk (RFC 3030 leaves the size to the client); Postfix writes its
# queue file records through in about this size.  Also the unit of DATA writes, each
# bounded by the data block timeout (RFC 5321 §4.5.3.2.5).
BDAT_CHUNK_SIZE = 64 * 1024
DATA_BLOCK_SIZE = 64 * 1024


def describe_command(event: Event) -> str:
    """The command as the transcript shows it: AUTH data never appears."""
    match event:
        case Auth(mechanism, _):
            return f"AUTH {mechanism}"
        case AuthResponse():
            return "(SASL response)"
    return write_command(event).decode("utf-8").rstrip("\r\n")


class _Refused(Exception):
    """Refused before sending: ``reply`` for every recipient, ``reason`` in words."""

    def __init__(self, reply: Reply, reason: str) -> None:
        super().__init__(reason)
        self.reply = reply
        self.reason = reason


def prepare_body(
    message: OutgoingMessage, extensions: dict[str, str], bdat: bool
) -> tuple[bytes, str | None]:
    """(the body to send, its BODY= value) for a peer offering ``extensions``."""
    body = message.body
    binary_ok = bdat and "BINARYMIME" in extensions
    if message.body_type is BodyType.BINARY_MIME:
        if binary_ok:
            return body, "BINARYMIME"
        # A BINARYMIME body may still be text (no NUL, no bare CR or LF): then 8BITMIME
        # carries it unchanged.
        clean_text = b"\0" not in body and normalize_line_endings(body) == body
    elif b"\0" in body:
        raise _Refused(codes.R554_NUL_IN_DATA, "NUL octet in a message that is not BINARYMIME")
    else:
        body = normalize_line_endings(body)  # DESIGN: the relayed body is re-framed
        if body and not body.endswith(b"\r\n"):
            body += b"\r\n"  # as the DATA writer ends it (RFC 5321 §4.1.1.4), BDAT too
        clean_text = True  # no NUL (above), every line end CRLF (just now)
    eight_bit = not body.isascii()
    if clean_text and (not eight_bit or "8BITMIME" in extensions):
        declared = message.body_type is not BodyType.SEVEN_BIT or eight_bit
        return body, "8BITMIME" if declared and "8BITMIME" in extensions else None
    try:
        return to_seven_bit(body), None
    except DowngradeError as exc:
        raise _Refused(codes.R554_CONVERSION_IMPOSSIBLE, str(exc)) from None


def _size_limit(extensions: dict[str, str]) -> int:
    """The peer's SIZE (RFC 1870 §4), 0 when it gives none."""
    value = extensions.get("SIZE", "")
    return int(value) if value.isdigit() else 0


def _chunks(body: bytes, size: int) -> Iterator[bytes]:
    for start in range(0, len(body), size):
        yield body[start : start + size]


class _Stale(Exception):
    """The RSET ahead of the transaction got no 250: the connection is not usable."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class _Transaction:
    def __init__(
        self,
        channel: Channel,
        info: SessionInfo,
        settings: ClientSettings,
        message: OutgoingMessage,
        reset_first: bool = False,
    ) -> None:
        self.channel = channel
        self.info = info
        self.settings = settings
        self.message = message
        self.reset_first = reset_first
        self.timeouts = settings.timeouts
        self.ext = info.extensions
        self.final: list[Reply | None] = [None] * len(message.recipients)
        self.accepted: list[int] = []
        self.mail_reply: Reply | None = None
        self.dsn = "DSN" in self.ext

    async def reply(self, stage: Stage, command: str, timeout: float) -> Reply:
        reply = await self.channel.reply(stage, command, timeout)
        if self.channel.conn.state is State.CLOSED:
            # 421 (RFC 5321 §3.8) or 221 out of turn: the peer is going away.
            raise ChannelError(f"peer closed the connection: {reply}", reply)
        return reply

    def address(self, text: str, refusal: Reply, *, sender: bool) -> Address | None:
        """The envelope address as it can go to this peer.  Without SMTPUTF8 an
        internationalised domain goes in its A-label form (RFC 5890 §2.3.2.1: plain
        ASCII to SMTP); a non-ASCII local part cannot go at all (RFC 6531 §3.2)."""
        what = "sender" if sender else "recipient"
        try:
            address = parse_path(f"<{text}>", allow_null=sender, allow_postmaster=not sender)
            if address is None or not address.is_utf8 or "SMTPUTF8" in self.ext:
                return address
            if not address.local_part.isascii():
                raise _Refused(
                    codes.R553_SMTPUTF8_REQUIRED, f"{what} {text!r} needs SMTPUTF8, not offered"
                )
            return Address(address.local_part, to_ascii_domain(address.domain))
        except (AddressError, UnicodeError) as exc:  # idna.IDNAError is a UnicodeError
            raise _Refused(refusal, f"{what} {text!r}: {exc}") from None

    def envelope(self, body: bytes, body_param: str | None) -> tuple[MailFrom, list[RcptTo]]:
        msg = self.message
        sender = self.address(msg.mail_from, codes.R553_BAD_SENDER_SYNTAX, sender=True)
        utf8 = msg.smtputf8 or (sender is not None and sender.is_utf8)
        rcpts: list[RcptTo] = []
        for rcpt in msg.recipients:
            address = self.address(rcpt.address, codes.R553_BAD_RECIPIENT_SYNTAX, sender=False)
            assert address is not None
            utf8 = utf8 or address.is_utf8
            dsn = RcptParams(rcpt.notify, rcpt.orcpt) if self.dsn else RcptParams()
            rcpts.append(RcptTo(address, dsn))
        params = MailParams(
            size=len(body) if "SIZE" in self.ext else None,
            body=body_param,
            smtputf8=utf8,
            ret=msg.ret if self.dsn else None,
            envid=msg.envid if self.dsn else None,
        )
        return MailFrom(sender, params), rcpts

    def check(self) -> tuple[bytes, str | None, bool]:
        msg = self.message
        if msg.smtputf8 and "SMTPUTF8" not in self.ext:
            raise _Refused(codes.R553_SMTPUTF8_REQUIRED, "SMTPUTF8 required but not offered")
        bdat = self.settings.use_chunking and "CHUNKING" in self.ext
        body, body_param = prepare_body(msg, self.ext, bdat)
        limit = _size_limit(self.ext)
        if limit and len(body) > limit:
            raise _Refused(
                codes.R552_TOO_BIG_FOR_PEER,
                f"message of {len(body)} octets, the peer accepts at most {limit}",
            )
        return body, body_param, bdat

    async def run(self) -> str:
        """Drive the transaction; returns the failure reason ("" when it completed)."""
        body, body_param, bdat = self.check()
        mail, rcpts = self.envelope(body, body_param)
        t = self.timeouts
        stop = self.settings.stop_after
        # A stop inside the envelope needs each reply before the next command.
        pipelining = (
            self.settings.use_pipelining
            and "PIPELINING" in self.ext
            and stop not in (Stage.MAIL, Stage.RCPT, Stage.DATA)
        )
        bdat = bdat and stop is not Stage.DATA
        data_sent = False
        if pipelining:
            # RSET may stand anywhere in a pipelined group (RFC 2920 §3.1): the check
            # of a reused connection costs no round trip of its own.
            group: list[Event] = [mail, *rcpts]
            if not bdat:
                group.append(Data())
                data_sent = True
            await self.open_with(group)
        else:
            if self.reset_first:
                await self.open_with([])
            self.channel.write([mail])
        self.mail_reply = await self.reply(Stage.MAIL, describe_command(mail), t.mail)
        if stop is Stage.MAIL:
            return await self.stop("MAIL")
        for index, rcpt in enumerate(rcpts):
            if not pipelining:
                if not self.mail_reply.is_positive:
                    break
                self.channel.write([rcpt])
            reply = await self.reply(Stage.RCPT, describe_command(rcpt), t.rcpt)
            if reply.is_positive and self.mail_reply.is_positive:
                self.accepted.append(index)
            else:
                self.final[index] = reply
        if not self.mail_reply.is_positive:
            self.final = [self.mail_reply] * len(self.final)
        if stop is Stage.RCPT:
            return await self.stop("RCPT")
        if not data_sent and self.accepted and not bdat:
            self.channel.write([Data()])
            data_sent = True
        if data_sent:
            data_reply = await self.reply(Stage.DATA, "DATA", t.data_init)
            if data_reply.code == 354 and not self.accepted:
                # RFC 2920 §3.1: DATA accepted although no RCPT was: end it empty.
                self.channel.write([EndOfData(0)])
                await self.reply(Stage.MESSAGE, ".", t.data_end)
                return "no recipient accepted"
            if data_reply.code != 354:
                for index in self.accepted:
                    self.final[index] = data_reply
                self.accepted = []
            elif stop is Stage.DATA:
                # Inside the data nothing but the message may follow (RFC 5321
                # §4.1.1.4): leave without it; the server must not deliver (§4.1.1.4,
                # a transaction without its end of data is aborted).
                self.fill_stopped()
                self.channel.abort()
                return "stopped after DATA (--quit-after): connection dropped"
        if not self.accepted:
            if self.mail_reply.is_positive:
                await self.reset()
            return "no recipient accepted" if self.mail_reply.is_positive else "MAIL refused"
        if bdat:
            await self.send_chunks(body)
        else:
            await self.send_data(body)
        return ""

    async def open_with(self, group: list[Event]) -> None:
        """Write ``group``, behind an RSET when the connection is a reused one
        (``reset_first``): ``_Stale`` unless that RSET is answered 250 (Postfix checks
        a cached connection with RSET too, bounded by smtp_rset_timeout)."""
        if not self.reset_first:
            self.channel.write(group)
            await self.channel.drain(self.timeouts.data_block)
            return
        try:
            self.channel.write([Rset(), *group])
            await self.channel.drain(self.timeouts.data_block)
            reply = await self.reply(Stage.RSET, "RSET", self.timeouts.rset)
        except ChannelError as exc:
            raise _Stale(exc.reason) from None
        if reply.code != 250:
            raise _Stale(f"RSET answered {reply}")

    async def send_data(self, body: bytes) -> None:
        t = self.timeouts
        blocks = list(_chunks(body, DATA_BLOCK_SIZE))
        for block in blocks[:-1]:
            self.channel.write([DataChunk(block)])
            await self.channel.drain(t.data_block)
        # The last block and the final dot in one write: one segment fewer per message.
        last = [DataChunk(blocks[-1])] if blocks else []
        self.channel.write([*last, EndOfData(len(body))])
        await self.channel.drain(t.data_block)
        await self.final_replies(".", t.data_end)

    def fill_stopped(self) -> None:
        self.final = [r if r is not None else codes.R451_STOPPED_BY_CLIENT for r in self.final]

    async def stop(self, after: str) -> str:
        """QUIT after the reply to ``after`` (``ClientSettings.stop_after``)."""
        self.fill_stopped()
        self.channel.write([Quit()])
        await self.channel.reply(Stage.QUIT, "QUIT", self.timeouts.quit)
        self.channel.close()
        return f"stopped after {after} (--quit-after)"

    async def send_chunks(self, body: bytes) -> None:
        t = self.timeouts
        size = self.settings.bdat_chunk_size or BDAT_CHUNK_SIZE
        pieces = list(_chunks(body, size)) or [b""]
        for number, piece in enumerate(pieces, 1):
            self.channel.write([Bdat(len(piece), last=number == len(pieces)), DataChunk(piece)])
            await self.channel.drain(t.data_block)
        failure: Reply | None = None
        for piece in pieces[:-1]:
            reply = await self.reply(Stage.BDAT, f"BDAT {len(piece)}", t.data_block)
            if not reply.is_positive and failure is None:
                failure = reply  # RFC 3030 §2: the transaction is over; later chunks 503
        if failure is None:
            await self.final_replies(f"BDAT {len(pieces[-1])} LAST", t.data_end)
            return
        for index in self.accepted:
            self.final[index] = failure
        await self.reply(Stage.MESSAGE, f"BDAT {len(pieces[-1])} LAST", t.data_end)

    async def final_replies(self, command: str, timeout: float) -> None:
        if self.settings.lmtp:
            for index in self.accepted:  # RFC 2033 §4.2: one each, in RCPT order
                self.final[index] = await self.reply(Stage.MESSAGE, command, timeout)
            return
        reply = await self.reply(Stage.MESSAGE, command, timeout)
        for index in self.accepted:
            self.final[index] = reply

    async def reset(self) -> None:
        self.channel.write([Rset()])
        await self.reply(Stage.RSET, "RSET", self.timeouts.rset)


async def run_transaction(
    channel: Channel,
    info: SessionInfo,
    settings: ClientSettings,
    message: OutgoingMessage,
    *,
    usable: bool,
    reset_first: bool = False,
) -> TransactionResult:
    """Send ``message`` on ``channel``; a result for every recipient, never raising for
    what the peer or the network did.  ``reset_first``: the connection was idle (a
    pooled one); an RSET ahead of MAIL checks it, and a result marked ``stale`` says it
    was gone."""
    start = len(channel.transcript)
    txn = _Transaction(channel, info, settings, message, reset_first)
    reason = ""
    stale = False
    if not message.recipients:
        reason = "no recipients"  # nothing to send: no MAIL without a RCPT to follow
    elif not usable:
        reason = "connection not usable"
        stale = reset_first
        txn.final = [codes.R451_CONNECTION_LOST] * len(txn.final)
    else:
        try:
            reason = await txn.run()
        except _Refused as exc:
            reason = exc.reason
            txn.final = [exc.reply] * len(txn.final)
        except _Stale as exc:
            # Nothing after the RSET can have been taken: no final dot was sent.
            reason = exc.reason
            stale = True
            txn.final = [codes.R451_CONNECTION_LOST] * len(txn.final)
            channel.abort()
        except ChannelError as exc:
            reason = exc.reason
            txn.final = [r if r is not None else exc.reply for r in txn.final]
            channel.abort()
    still_usable = (
        usable
        and not stale
        and channel.alive
        and channel.conn.state is State.READY
        and channel.conn.pending == 0
    )
    missing = [r for r in txn.final if r is None]
    assert not missing, "every recipient has a reply"
    # The RCPTs went out with NOTIFY/ORCPT when the peer offers DSN and MAIL was taken.
    passed = txn.dsn and txn.mail_reply is not None and txn.mail_reply.is_positive
    # A reply the peer sent is an object of this transaction's transcript (a 421 that
    # ended it included); the ones we made (``codes.R4xx/R5xx``) never are.
    received = [entry.reply for entry in channel.transcript[start:]]
    results = tuple(
        RecipientResult(rcpt, reply, dsn_passed=passed, from_peer=any(reply is r for r in received))
        for rcpt, reply in zip(message.recipients, txn.final, strict=True)
        if reply is not None
    )
    return TransactionResult(
        recipients=results,
        mail_reply=txn.mail_reply,
        usable=still_usable,
        info=info,
        transcript=tuple(channel.transcript[start:]),
        reason=reason,
        stale=stale,
    )
