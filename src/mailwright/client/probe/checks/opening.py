"""Banner and EHLO: who answers, what it advertises (RFC 5321 §4.1.1.1, §4.2)."""

from __future__ import annotations

import re

from mailwright.client.probe.context import Context
from mailwright.client.probe.dialog import ChannelError, Dialog
from mailwright.client.probe.findings import finding

# A product name with a version number in the greeting ("Postfix 3.7.2", "Exim 4.96",
# "Sendmail 8.17.1/8.17.1", "Microsoft ESMTP MAIL Service, Version: 10.0").  A bare
# product name without a version tells an attacker little and is not reported.
_VERSIONED = re.compile(
    r"\b(postfix|exim|sendmail|haraka|opensmtpd|qmail|exchange|microsoft esmtp mail service"
    r"|zimbra|courier|mdaemon|hmailserver|mailwright|kerio|icewarp|smtpd)\b"
    r"[^0-9]{0,20}\d+\.\d+",
    re.IGNORECASE,
)


async def run(ctx: Context) -> Dialog | None:
    """Connect, read the banner, EHLO.  Returns the open dialog (for STARTTLS), or None
    with ``report.failed`` set when the server cannot be talked to."""
    report = ctx.report
    try:
        dialog = await Dialog.open(ctx.target, ctx.settings)
    except ChannelError as exc:
        report.failed = f"{ctx.target.address} port {ctx.target.port}: {exc.reason}"
        return None
    report.facts["banner"] = str(dialog.greeting)
    if dialog.greeting.code != 220:
        report.note_reply(dialog.greeting)
        report.failed = f"the server refused the session: {dialog.greeting}"
        await dialog.close()
        return None
    if _VERSIONED.search(dialog.greeting.text):
        report.add(finding("banner-reveals-software", str(dialog.greeting)))
    try:
        reply = await dialog.hello()
    except ChannelError as exc:
        report.failed = f"EHLO: {exc.reason}"
        await dialog.close()
        return None
    report.facts["ehlo"] = str(reply)
    report.note_reply(reply)
    if dialog.extensions is None:
        report.add(finding("no-esmtp", f"EHLO answered {reply}"))
        report.facts["extensions"] = {}
    else:
        report.facts["extensions"] = dict(dialog.extensions)
    if not reply.is_positive:
        report.failed = f"the server refused HELO too: {reply}"
        await dialog.close()
        return None
    return dialog
