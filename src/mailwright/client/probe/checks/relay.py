"""The open-relay test (``--relay-test``; RFC 5321 §7.1, RFC 2505 §2).

Only against the host the user named, and never delivering anything: for each classic
relay address form (the forms relay testers have used since the 1990s, each once
accepted by some MTA as "local"), a session with MAIL FROM a foreign sender, one RCPT
and RSET.  No
DATA is ever sent, so even an open relay carries nothing.  Any form answered 2xx is
``open-relay``; the detail lists which.

The forms are written by the core's command writer.  Most are valid RFC 5321 paths
(``%`` and ``!`` are atext, a quoted local part may hold ``@``); the source route
``@host:user@other`` is a path with an A-d-l (§4.1.2, which a server must accept and
ignore, Appendix C), and ``user@other@host`` is deliberately invalid -- a server that
accepts it parses addresses loosely enough to relay.  Both are put in ``Address`` as
text, which the writer copies between the angle brackets unchanged.
"""

from __future__ import annotations

from mailwright.client.probe.context import Context
from mailwright.client.probe.dialog import ChannelError, Dialog
from mailwright.client.probe.findings import finding
from mailwright.net.outbound import Stage
from mailwright.smtp import Address, AddressError, MailFrom, RcptTo, Reply, Rset, parse_path

LOCAL_PART = "relay-probe"


def relay_forms(host: str, other: str) -> list[tuple[str, Address]]:
    """(name, address) for each form; ``host`` is the target as an address domain,
    ``other`` the foreign domain."""
    user = LOCAL_PART
    return [
        ("plain foreign recipient", Address(user, other)),
        ("percent hack", Address(f"{user}%{other}", host)),
        ("quoted local part", Address(f'"{user}@{other}"', host)),
        ("source route", Address(f"@{host}:{user}", other)),
        ("bang path", Address(f"{other}!{user}", host)),
        ("double at", Address(f"{user}@{other}", host)),
        ("percent hack, quoted", Address(f'"{user}%{other}"', host)),
        ("bang path, reversed", Address(f"{user}!{other}", host)),
    ]


async def run(ctx: Context) -> None:
    settings = ctx.settings
    try:
        sender = parse_path(f"<{settings.relay_from}>", allow_null=True)
    except AddressError as exc:
        ctx.report.notes.append(f"relay test not run: --relay-from {settings.relay_from}: {exc}")
        return
    accepted: list[str] = []
    tried: dict[str, str] = {}
    try:
        for name, address in relay_forms(ctx.target.domain_part, settings.relay_domain):
            reply = await _try(ctx, sender, address)
            tried[address.to_path()] = str(reply)
            ctx.report.note_reply(reply)
            if reply.is_positive:
                accepted.append(f"{name} {address.to_path()}: {reply}")
    except _NotRun as exc:
        ctx.report.notes.append(f"relay test stopped: {exc}")
    ctx.report.facts["relay_test"] = tried
    if accepted:
        ctx.report.add(finding("open-relay", "; ".join(accepted)))


class _NotRun(Exception):
    """The form could not be tried (no session, MAIL refused); the reason in words."""


async def _try(ctx: Context, sender: Address | None, address: Address) -> Reply:
    """MAIL, one RCPT, RSET in a session of its own: refused RCPTs count as errors, and
    a server that tarpits or drops a client after a few (Postfix smtpd_soft_error_limit,
    smtpd_hard_error_limit; our abuse.tarpit_after) would otherwise slow or end the
    test.  Never DATA: nothing is relayed."""
    try:
        dialog = await Dialog.open(ctx.target, ctx.settings)
    except ChannelError as exc:
        raise _NotRun(exc.reason) from None
    try:
        if dialog.greeting.code != 220 or not (await dialog.hello()).is_positive:
            raise _NotRun("the session was refused")
        mail = await dialog.command(MailFrom(sender), Stage.MAIL)
        if not mail.is_positive:
            ctx.report.note_reply(mail)
            raise _NotRun(f"MAIL FROM:<{ctx.settings.relay_from}> refused: {mail}")
        reply = await dialog.command(RcptTo(address), Stage.RCPT)
        if dialog.open_for_commands:
            await dialog.command(Rset(), Stage.RSET)
        return reply
    except ChannelError as exc:
        raise _NotRun(exc.reason) from None
    finally:
        await dialog.close()
