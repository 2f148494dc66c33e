"""AUTH (RFC 4954): which mechanisms, and whether any is offered before TLS.

RFC 4954 §4 and RFC 8314 want credentials only inside TLS; a server that lists AUTH in
its plaintext EHLO invites clients to send them in the open (``auth-before-tls``).
"""

from __future__ import annotations

from mailwright.client.probe.context import Context
from mailwright.client.probe.findings import finding


def mechanisms(extensions: dict[str, str]) -> list[str]:
    return [m.upper() for m in extensions.get("AUTH", "").split()]


def run(ctx: Context, plaintext: dict[str, str], over_tls: dict[str, str] | None) -> None:
    before = mechanisms(plaintext)
    ctx.report.facts["auth_before_tls"] = before
    if before:
        ctx.report.add(
            finding("auth-before-tls", "AUTH " + " ".join(before) + " offered in plaintext")
        )
    if over_tls is not None:
        after = mechanisms(over_tls)
        ctx.report.facts["auth_after_tls"] = after
        if after:
            ctx.report.add(finding("auth-mechanisms", "after STARTTLS: AUTH " + " ".join(after)))
