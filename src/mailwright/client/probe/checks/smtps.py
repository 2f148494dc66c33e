"""Implicit TLS on the submissions port (RFC 8314 §3, port 465 unless --smtps-port).

TLS starts with the first octet, which the core's STARTTLS-driven channel does not do,
so this check uses the raw wire (``client.probe.raw``): handshake, greeting, EHLO.  The
certificate gets the same checks as the STARTTLS one; a port that does not answer is
``no-implicit-tls`` (info: many MX hosts rightly have no submission service).
"""

from __future__ import annotations

import ssl

from mailwright.client.probe import certs
from mailwright.client.probe.checks.starttls import describe
from mailwright.client.probe.context import Context
from mailwright.client.probe.findings import finding
from mailwright.client.probe.raw import RawError, RawWire
from mailwright.smtp import Ehlo, Quit


async def run(ctx: Context) -> None:
    port = ctx.settings.smtps_port
    if not port:
        return
    where = f"implicit TLS (port {port})"
    sni = certs.server_name_for(ctx.target.host)
    timeout = ctx.settings.timeout
    try:
        wire = await RawWire.open(
            ctx.target.address, port, timeout, context=certs.inspecting_context(), server_name=sni
        )
    except (OSError, ssl.SSLError, TimeoutError) as exc:
        ctx.report.add(finding("no-implicit-tls", f"port {port}: {exc or type(exc).__name__}"))
        ctx.report.facts["smtps"] = None
        return
    try:
        ssl_object = wire.ssl_object
        assert ssl_object is not None
        describe(ctx, ssl_object, where, "smtps")
        greeting = await wire.reply()
        ctx.report.facts["smtps"]["banner"] = str(greeting)
        if greeting.code == 220:
            ehlo = await wire.command(Ehlo(ctx.settings.helo))
            ctx.report.facts["smtps"]["ehlo"] = str(ehlo)
            await wire.command(Quit())
    except RawError as exc:
        ctx.report.notes.append(f"{where}: {exc}")
    finally:
        await wire.close()
    await _verify(ctx, port, sni, where)


async def _verify(ctx: Context, port: int, sni: str | None, where: str) -> None:
    context = certs.verifying_context(ctx.settings.ca_file)
    try:
        wire = await RawWire.open(
            ctx.target.address, port, ctx.settings.timeout, context=context, server_name=sni
        )
    except ssl.SSLCertVerificationError as exc:
        problem = certs.trust_problem(f"certificate verify failed: {exc.verify_message}")
        ctx.report.facts["smtps"]["verified"] = False
        if problem is not None:
            ctx.report.add(finding("untrusted-certificate", f"{where}: {problem}"))
        return
    except (OSError, ssl.SSLError, TimeoutError) as exc:
        ctx.report.notes.append(f"{where}: certificate chain not checked: {exc}")
        return
    ctx.report.facts["smtps"]["verified"] = True
    await wire.close()
