"""The SMTP smuggling test (``--smuggling-test --to ADDRESS``; CVE-2023-51764 and
relatives, "SMTP Smuggling", SEC Consult 2023).

RFC 5321 §4.1.1.4 ends the data at <CRLF>.<CRLF> only.  A server that also ends it at
a variant (<LF>.<LF>, <CR>.<CRLF> ...) can be fed, through an outbound relay that
passes the variant on untouched, a message whose body holds a second, forged
transaction.  For each variant this check sends one real message to the user's own
``--to`` address whose body carries, right after the variant, a complete smuggled
transaction (MAIL FROM, RCPT TO, DATA, a message) before the real <CRLF>.<CRLF>; then
QUIT.  The replies tell what the server did:

* one reply to the data, then 221: the variant was body text -- not vulnerable;
* more replies before the 221: the server ended the data at the variant and read the
  smuggled commands; a 354 followed by a 2xx means it accepted the smuggled message.

Either way the variant is reported (``smuggling-<variant>``).  Each variant gets its
own connection, since a vulnerable server's state is unknown after it.  The body is
written by ``client.probe.raw`` (the core refuses to frame malformed data).
"""

from __future__ import annotations

import ssl
from email.utils import formatdate, make_msgid

from mailwright.client.probe.context import Context
from mailwright.client.probe.findings import finding
from mailwright.client.probe.raw import RawError, RawWire
from mailwright.smtp import (
    Address,
    AddressError,
    Data,
    Ehlo,
    MailFrom,
    Quit,
    RcptTo,
    Reply,
    parse_path,
    write_command,
)

# (finding suffix, the end-of-data variant).  The ids are registered in findings.KINDS.
VARIANTS: tuple[tuple[str, bytes], ...] = (
    ("bare-lf", b"\n.\n"),
    ("lf-dot-crlf", b"\n.\r\n"),
    ("crlf-dot-lf", b"\r\n.\n"),
    ("cr-dot-crlf", b"\r.\r\n"),
    ("crlf-dot-cr", b"\r\n.\r"),
    ("bare-cr", b"\r.\r"),
    ("lf-dot-cr", b"\n.\r"),
)
# Replies read after the data before giving up: the smuggled MAIL, RCPT, DATA, end of
# data, and QUIT make five; a few more allow for a server that answers twice.
MAX_REPLIES_AFTER_DATA = 8


def message(name: str, mail_from: Address, to: Address) -> bytes:
    """The body written after the 354: a real message, the variant, a smuggled
    transaction, and the one true <CRLF>.<CRLF>."""
    variant = dict(VARIANTS)[name]
    real = (
        f"From: <{mail_from}>\r\nTo: <{to}>\r\nDate: {formatdate()}\r\n"
        f"Message-ID: {make_msgid('probe')}\r\n"
        f"Subject: mailwright probe: SMTP smuggling test ({name})\r\n\r\n"
        "This message tests whether the server ends DATA at a sequence other than\r\n"
        "<CRLF>.<CRLF>.  It was sent by mailwright probe --smuggling-test."
    ).encode()
    smuggled = (
        write_command(MailFrom(mail_from))
        + write_command(RcptTo(to))
        + write_command(Data())
        + (
            f"From: <{mail_from}>\r\nTo: <{to}>\r\nDate: {formatdate()}\r\n"
            f"Message-ID: {make_msgid('smuggled')}\r\n"
            f"Subject: mailwright probe: SMUGGLED message ({name})\r\n\r\n"
            f"If this arrived as a message of its own, the server ended DATA at {name}.\r\n"
        ).encode()
    )
    return real + variant + smuggled + b"\r\n.\r\n"


def _path(text: str) -> Address:
    address = parse_path(f"<{text}>", allow_null=False)
    assert address is not None
    return address


async def run(ctx: Context) -> None:
    settings = ctx.settings
    assert settings.smuggling_to is not None  # the CLI requires --to
    try:
        to = _path(settings.smuggling_to)
        mail_from = _path(settings.mail_from or settings.smuggling_to)
    except AddressError as exc:
        ctx.report.notes.append(f"smuggling test not run: {exc}")
        return
    results: dict[str, str] = {}
    for name, _ in VARIANTS:
        try:
            outcome = await _variant(ctx, name, mail_from, to)
        except _Refused as exc:  # the same for every variant: say it once
            ctx.report.notes.append(f"smuggling test not run: {exc}")
            break
        except (RawError, OSError, ssl.SSLError, TimeoutError) as exc:
            results[name] = f"not checked: {exc}"
            ctx.report.notes.append(f"smuggling {name}: not checked: {exc}")
            continue
        results[name] = outcome.summary
        ctx.report.note_reply(outcome.first, *outcome.extra)
        if outcome.ended_early:
            ctx.report.add(finding(f"smuggling-{name}", outcome.summary))
    ctx.report.facts["smuggling_test"] = results


class _Refused(RawError):
    """The transaction was refused before the body: the test cannot run at all."""


class _Outcome:
    def __init__(self, first: Reply, extra: list[Reply]) -> None:
        self.first = first
        self.extra = extra
        self.ended_early = bool(extra)
        codes = [r.code for r in extra]
        self.accepted = 354 in codes and any(r.is_positive for r in extra[codes.index(354) + 1 :])

    @property
    def summary(self) -> str:
        if not self.extra:
            return f"one reply to the data ({self.first}): not vulnerable"
        replies = ", ".join(str(r.code) for r in self.extra)
        verdict = (
            "the smuggled message was accepted"
            if self.accepted
            else "the smuggled transaction was read but not accepted"
        )
        return f"data ended at the variant ({self.first}); then {replies}: {verdict}"


async def _variant(ctx: Context, name: str, mail_from: Address, to: Address) -> _Outcome:
    wire = await RawWire.open(ctx.target.address, ctx.target.port, ctx.settings.timeout)
    try:
        for reply in (
            await wire.reply(),
            await wire.command(Ehlo(ctx.settings.helo)),
            await wire.command(MailFrom(mail_from)),
            await wire.command(RcptTo(to)),
        ):
            if not 200 <= reply.code < 300:
                raise _Refused(f"refused before DATA: {reply}")
        reply = await wire.command(Data())
        if reply.code != 354:
            raise _Refused(f"DATA answered {reply}")
        wire.write(message(name, mail_from, to))
        first = await wire.reply()
        extra: list[Reply] = []
        try:
            wire.write(write_command(Quit()))
            for _ in range(MAX_REPLIES_AFTER_DATA):
                reply = await wire.reply()
                if reply.code == 221:
                    break
                extra.append(reply)
        except (RawError, OSError):
            pass  # the server closed after the data: what it said before counts
        return _Outcome(first, extra)
    finally:
        await wire.close()
