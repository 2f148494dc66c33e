"""User enumeration: VRFY, EXPN (RFC 5321 §3.5) and RCPT.

Each is asked about a mailbox that exists (``--user-probe ADDRESS``, else
``postmaster``, which every mail domain must have: RFC 5321 §4.5.1) and about a random
one that cannot exist.  VRFY or EXPN that confirm the first (250/251) and deny the
second (550/551/553) hand out the user list: ``user-enumeration``.  252 ("cannot
verify, will accept", §3.5.3) and 502 (disabled) reveal nothing.

RCPT is asked only with ``--user-probe`` (it needs a real mailbox of a domain the
server receives for), inside a transaction that is reset, never completed.  A server
that accepts the real one and refuses the random one is ``user-enumeration-rcpt``
(info: that is the correct behaviour of an MX, see the finding).
"""

from __future__ import annotations

import secrets

from mailwright.client.probe.context import Context
from mailwright.client.probe.dialog import ChannelError, Dialog
from mailwright.client.probe.findings import finding
from mailwright.net.outbound import Stage
from mailwright.smtp import (
    Address,
    AddressError,
    Event,
    Expn,
    MailFrom,
    RcptTo,
    Reply,
    Rset,
    Vrfy,
    parse_path,
)

_CONFIRMS = (250, 251)
_DENIES = (550, 551, 553)


def random_local_part() -> str:
    return "no-such-user-" + secrets.token_hex(6)


def _address(text: str) -> Address:
    address = parse_path(f"<{text}>", allow_null=False)
    assert address is not None  # allow_null=False
    return address


def _reveals(known: Reply, unknown: Reply) -> bool:
    return known.code in _CONFIRMS and unknown.code in _DENIES


async def run(ctx: Context) -> None:
    user = ctx.settings.user_probe
    if user:
        try:
            known = _address(user)
        except AddressError as exc:
            ctx.report.notes.append(f"--user-probe {user}: {exc}; enumeration not checked")
            return
        known_arg, unknown = str(known), Address(random_local_part(), known.domain)
        unknown_arg = str(unknown)
    else:
        known_arg, unknown_arg = "postmaster", random_local_part()
    try:
        dialog = await Dialog.open(ctx.target, ctx.settings)
    except ChannelError as exc:
        ctx.report.notes.append(f"user enumeration not checked: {exc.reason}")
        return
    try:
        if dialog.greeting.code != 220 or not (await dialog.hello()).is_positive:
            ctx.report.notes.append("user enumeration not checked: the session was refused")
            return
        seen: dict[str, str] = {}
        for verb, make in (("VRFY", Vrfy), ("EXPN", Expn)):
            pair = await _ask(dialog, make(known_arg), make(unknown_arg))
            if pair is None:
                return
            seen[verb] = f"{pair[0]} / {pair[1]}"
            ctx.report.note_reply(*pair)
            if _reveals(*pair):
                ctx.report.add(
                    finding(
                        "user-enumeration",
                        f"{verb} {known_arg}: {pair[0]}; {verb} {unknown_arg}: {pair[1]}",
                    )
                )
        if user:
            rcpt = await _rcpt(dialog, known, unknown)
            if rcpt is not None:
                seen["RCPT"] = f"{rcpt[0]} / {rcpt[1]}"
                ctx.report.note_reply(*rcpt)
                if rcpt[0].is_positive and rcpt[1].is_permanent:
                    ctx.report.add(
                        finding(
                            "user-enumeration-rcpt",
                            f"RCPT TO:<{known}>: {rcpt[0]}; RCPT TO:<{unknown}>: {rcpt[1]}",
                        )
                    )
        ctx.report.facts["enumeration"] = seen
    except ChannelError as exc:
        ctx.report.notes.append(f"user enumeration stopped: {exc.reason}")
    finally:
        await dialog.close()


async def _ask(dialog: Dialog, first: Event, second: Event) -> tuple[Reply, Reply] | None:
    stage = Stage.EHLO  # the transcript's stage for commands outside a transaction
    one = await dialog.command(first, stage)
    if not dialog.open_for_commands:
        return None
    two = await dialog.command(second, stage)
    return (one, two) if dialog.open_for_commands else None


async def _rcpt(dialog: Dialog, known: Address, unknown: Address) -> tuple[Reply, Reply] | None:
    mail = await dialog.command(MailFrom(None), Stage.MAIL)
    if not mail.is_positive:
        return None
    one = await dialog.command(RcptTo(known), Stage.RCPT)
    two = await dialog.command(RcptTo(unknown), Stage.RCPT)
    await dialog.command(Rset(), Stage.RSET)
    return one, two
