"""STARTTLS (RFC 3207) and the certificate behind it.

On the opening dialog: is STARTTLS offered (``no-starttls``), does the upgrade work
(``starttls-failed``), what does the leaf say (``certs.leaf_findings``: expired, not yet
valid, name mismatch) and, after the upgrade, the second EHLO (RFC 3207 §4.2) whose
extensions the AUTH check reads.  Then two short extra sessions: a verifying handshake
(``untrusted-certificate``: chain against the system CAs and ``--ca``) and one that
offers only TLS 1.0/1.1 (``weak-tls-protocol``, RFC 8996).
"""

from __future__ import annotations

import ssl

from mailwright.client.probe import certs
from mailwright.client.probe.context import Context
from mailwright.client.probe.dialog import ChannelError, Dialog
from mailwright.client.probe.findings import finding


async def run(ctx: Context, dialog: Dialog) -> dict[str, str] | None:
    """STARTTLS on ``dialog``; the extensions of the EHLO over TLS, or None when TLS
    could not be set up (the dialog is then closed)."""
    report = ctx.report
    extensions = dialog.extensions or {}
    if "STARTTLS" not in extensions:
        report.add(finding("no-starttls", "STARTTLS not in the EHLO reply"))
        report.facts["starttls"] = False
        return None
    report.facts["starttls"] = True
    sni = certs.server_name_for(ctx.target.host)
    try:
        reply = await dialog.starttls(certs.inspecting_context(), sni)
    except ChannelError as exc:
        report.add(finding("starttls-failed", exc.reason))
        await dialog.close()
        return None
    if reply.code != 220:
        report.note_reply(reply)
        report.add(finding("starttls-failed", f"STARTTLS answered {reply}"))
        await dialog.close()
        return None
    ssl_object = dialog.ssl_object
    assert ssl_object is not None  # start_tls succeeded
    describe(ctx, ssl_object, "STARTTLS", "tls")
    try:
        reply = await dialog.hello()
    except ChannelError as exc:
        report.notes.append(f"EHLO after STARTTLS failed: {exc.reason}")
        await dialog.close()
        return None
    if not reply.is_positive:
        report.notes.append(f"EHLO after STARTTLS refused: {reply}")
        return None
    report.facts["tls_extensions"] = dict(dialog.extensions or {})
    await _verify(ctx)
    await _weak_protocols(ctx)
    return dialog.extensions or {}


def describe(ctx: Context, ssl_object: ssl.SSLObject, where: str, key: str) -> None:
    """Facts and leaf findings of the TLS session ``ssl_object`` (under ``facts[key]``)."""
    cipher = ssl_object.cipher()
    facts: dict[str, object] = {
        "version": ssl_object.version(),
        "cipher": cipher[0] if cipher else None,
    }
    der = ssl_object.getpeercert(binary_form=True)
    if der:
        leaf = certs.read_certificate(der)
        facts.update(
            subject=leaf.subject,
            issuer=leaf.issuer,
            names=list(leaf.names),
            not_before=leaf.not_before.isoformat(),
            not_after=leaf.not_after.isoformat(),
            self_signed=leaf.self_signed,
        )
        ctx.report.add(*certs.leaf_findings(leaf, ctx.cert_name, where))
        if ctx.cert_name is None:
            ctx.report.notes.append(
                f"{where}: certificate name not checked (the target is an IP address; "
                "name one with --tls-name)"
            )
    ctx.report.facts[key] = facts


async def _tls_session(ctx: Context, context: ssl.SSLContext) -> str | None:
    """A fresh session up to the TLS handshake with ``context``; the failure reason,
    or None when the handshake worked."""
    try:
        dialog = await Dialog.open(ctx.target, ctx.settings)
    except ChannelError as exc:
        return exc.reason
    try:
        await dialog.hello()
        reply = await dialog.starttls(context, certs.server_name_for(ctx.target.host))
        if reply.code != 220:
            return f"STARTTLS answered {reply}"
    except ChannelError as exc:
        return exc.reason
    finally:
        await dialog.close()
    return None


async def _verify(ctx: Context) -> None:
    reason = await _tls_session(ctx, certs.verifying_context(ctx.settings.ca_file))
    ctx.report.facts["tls"]["verified"] = reason is None
    if reason is None:
        return
    problem = certs.trust_problem(reason)
    if problem is not None:
        ctx.report.add(finding("untrusted-certificate", f"STARTTLS: {problem}"))
    elif "verify failed" not in reason:
        ctx.report.notes.append(f"certificate chain not checked: {reason}")


async def _weak_protocols(ctx: Context) -> None:
    context = certs.weak_protocol_context()
    if context is None:
        ctx.report.notes.append("TLS 1.0/1.1 not checked: the local OpenSSL cannot offer them")
        return
    reason = await _tls_session(ctx, context)
    if reason is None:
        ctx.report.add(finding("weak-tls-protocol", "STARTTLS: a TLS 1.0/1.1 handshake completed"))
