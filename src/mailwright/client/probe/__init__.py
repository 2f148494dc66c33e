"""``mailwright probe``: a report on an SMTP server (issue 11).

    report = await probe(Target("mx.example.org", "192.0.2.25", 25),
                         ProbeSettings(helo="probe.example.org"))
    report.findings   # Finding(kind, detail): kind.id, kind.severity, explanation, fix
    report.facts      # banner, EHLO extensions, TLS version/cipher/certificate ...
    report.to_json()  # the --json document

The checks run in order, each in ``checks/``: ``opening`` (banner, EHLO), ``auth``
(mechanisms; offered before TLS?), ``starttls`` (upgrade, certificate, trust, TLS
1.0/1.1), ``smtps`` (implicit TLS), ``enumeration`` (VRFY, EXPN, RCPT); then, only
when asked for, ``relay`` (never DATA) and ``smuggling`` (to the user's own address).
Every id a check can report is in ``findings.KINDS``.

Everything speaks through ``net.outbound``'s channel and the core's
``ClientConnection`` (``dialog``), except where the core must not be bent: implicit
TLS from the first octet and the smuggling body (``raw``).
"""

from __future__ import annotations

from mailwright.client.probe.checks import (
    auth,
    enumeration,
    opening,
    relay,
    smtps,
    smuggling,
    starttls,
)
from mailwright.client.probe.context import Context
from mailwright.client.probe.dialog import ProbeSettings, Target
from mailwright.client.probe.findings import KINDS, Finding, Kind, Severity
from mailwright.client.probe.report import Report

__all__ = [
    "KINDS",
    "Finding",
    "Kind",
    "ProbeSettings",
    "Report",
    "Severity",
    "Target",
    "probe",
]


async def probe(target: Target, settings: ProbeSettings) -> Report:
    """Run every check against ``target``; never raises for what the server does."""
    report = Report(f"{target.host}:{target.port}")
    ctx = Context(target, settings, report)
    dialog = await opening.run(ctx)
    if dialog is None:
        return report
    plaintext = dict(dialog.extensions or {})
    over_tls = await starttls.run(ctx, dialog)
    await dialog.close()
    auth.run(ctx, plaintext, over_tls)
    await smtps.run(ctx)
    await enumeration.run(ctx)
    if settings.relay_test:
        await relay.run(ctx)
    if settings.smuggling_to is not None:
        await smuggling.run(ctx)
    return report
