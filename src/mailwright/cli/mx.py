"""``mailwright mx DOMAIN``: the mail hosts of a domain, and with ``--check`` their health.

The lookups and checks live in ``client.mxreport`` / ``client.mxcheck``; this module
parses the options, builds the resolver and prints.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import platform
import sys
from pathlib import Path

import click

from mailwright.client.mxcheck import DEFAULT_TIMEOUT, SMTP_PORT, CheckSettings, HostCheck
from mailwright.client.mxreport import MxReport, MxUsageError, build_report
from mailwright.delivery.tlspolicy.fetch import HTTPS_PORT
from mailwright.dns.resolver import DnsResolver
from mailwright.dns.servers import parse_nameserver

EXIT_PROBLEMS = 1
EXIT_USAGE = 2

EPILOG = """\b
Output:
  The MX hosts by preference (lowest first: senders try it first) with their
  IPv4 and IPv6 addresses.  "implicit MX" means the domain has no MX records
  and mail goes to the domain's own address (RFC 5321 section 5.1); "null MX"
  means the domain says it accepts no mail (RFC 7505).  DNSSEC says whether
  the resolver vouched for the MX answer (the AD bit); only a resolver you
  trust can say so, which is why --dns names it.

\b
With --check, for each MX host (first address):
  banner      connect time and time to the 220 greeting
  STARTTLS    offered or not, and the TLS version
  certificate valid for the MX name (chain to a trusted CA, RFC 6125 name)
  TLSA        _25._tcp.<host> published, DNSSEC-authenticated, matching
and for the domain: MTA-STS (RFC 8461) record, policy, and MX hosts it covers.

\b
Examples:
  mailwright mx example.org
  mailwright mx bücher.example --json
  mailwright mx example.org --dns 9.9.9.9 --check
  mailwright mx example.test --dns 127.0.0.1:5353 --check --port 2525 --ca ca.pem

\b
Exit status:
  0  mail for the domain has somewhere to go (and with --check: no problem found)
  1  it has not (NXDOMAIN, null MX, no host, DNS failure) or a check found a
     problem; each is listed under "problems"
  2  usage error (bad domain name, bad --dns address)
"""


def _usage(message: str) -> None:
    click.echo(f"mailwright: mx: {message}", err=True)
    sys.exit(EXIT_USAGE)


def _ms(value: float | None) -> str:
    return f"{value:g} ms" if value is not None else "-"


def render(report: MxReport) -> str:
    """The human form (see ``--help``)."""
    out: list[str] = []
    title = report.domain
    if report.unicode_domain != report.domain:
        title = f"{report.unicode_domain} ({report.domain})"
    out.append(f"Domain   {title}")
    if report.error:
        out.append(f"MX       lookup failed: {report.error}")
    elif not report.exists:
        out.append("MX       the domain does not exist (NXDOMAIN)")
    elif report.null_mx:
        out.append('MX       null MX ("0 ."): the domain accepts no mail (RFC 7505)')
    elif report.implicit:
        out.append("MX       none: implicit MX, mail goes to the domain's own address")
        out.append("         (RFC 5321 §5.1)")
    elif not report.hosts:
        out.append("MX       none, and no address: the domain has no mail host")
    if not report.error:
        dnssec = "authenticated (AD bit set)" if report.dnssec else "not authenticated"
        out.append(f"DNSSEC   {dnssec}")
    for host in report.hosts:
        name = host.host
        if host.unicode_host != host.host:
            name = f"{host.unicode_host} ({host.host})"
        out.append(f"  {host.preference:>5}  {name}")
        for address in host.addresses:
            out.append(f"         {address}")
        if host.address_error:
            out.append(f"         address lookup failed: {host.address_error}")
        elif not host.addresses:
            out.append("         no A/AAAA records")
    for check in report.checks:
        out.extend(_render_check(check))
    if report.sts is not None:
        sts = report.sts
        out.append("MTA-STS")
        if not sts.published and not sts.error:
            out.append("  record   not published")
        if sts.record:
            out.append(f"  record   {sts.record}")
        if sts.mode:
            out.append(f"  policy   mode {sts.mode}, max_age {sts.max_age}")
            out.append(f"  mx       {', '.join(sts.mx_patterns) or '(none)'}")
            if sts.uncovered:
                out.append(f"  covers   not {', '.join(sts.uncovered)}")
            elif sts.mode != "none":
                out.append("  covers   every MX host")
        if sts.error:
            out.append(f"  error    {sts.error}")
    problems = report.problems
    out.append("Problems" + ("" if problems else " none"))
    out.extend(f"  - {p}" for p in problems)
    return "\n".join(out)


def _render_check(check: HostCheck) -> list[str]:
    out = [f"Check    {check.host} [{check.address}]:{check.port}"]
    if check.connect_ms is not None:
        out.append(f"  banner   connect {_ms(check.connect_ms)}, banner {_ms(check.banner_ms)}")
    if check.banner:
        out.append(f"           {check.banner}")
    if check.error:
        out.append(f"  error    {check.error}")
    if check.starttls is True:
        out.append(f"  STARTTLS offered, {check.tls_version or 'handshake failed'}")
    elif check.starttls is False:
        out.append("  STARTTLS not offered")
    if check.cert_valid is not None or check.cert_subject:
        verdict = "valid" if check.cert_valid else f"NOT valid: {check.cert_problem}"
        out.append(f"  cert     {verdict}")
        if check.cert_subject:
            out.append(f"           subject {check.cert_subject}")
            out.append(f"           issuer  {check.cert_issuer}")
            out.append(f"           names   {', '.join(check.cert_names) or '(none)'}")
            out.append(f"           expires {check.cert_not_after}")
    if check.tlsa:
        auth = "DNSSEC-authenticated" if check.tlsa_authentic else "NOT authenticated"
        out.append(f"  TLSA     {len(check.tlsa)} record(s), {auth}")
        out.append(f"           {check.tlsa_detail}")
    elif check.tlsa_detail and not check.error:
        out.append(f"  TLSA     {check.tlsa_detail}")
    return out


@click.command(epilog=EPILOG, context_settings={"max_content_width": 100})
@click.argument("domain")
@click.option(
    "--dns",
    "dns_server",
    metavar="IP[:PORT]",
    help="Ask this resolver (trusted for DNSSEC) instead of /etc/resolv.conf's.  IPv6 as [::1]:53.",
)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object instead.")
@click.option("--check", is_flag=True, help="Connect to each MX host and check it (see below).")
@click.option(
    "--port",
    type=click.IntRange(1, 65535),
    default=SMTP_PORT,
    show_default=True,
    help="SMTP port for --check.",
)
@click.option(
    "--ca",
    "ca_file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Also trust this CA (PEM) for certificates and the MTA-STS fetch.",
)
@click.option(
    "--helo",
    default=None,
    metavar="NAME",
    help="EHLO name for --check (default: this host's name).",
)
@click.option(
    "--timeout",
    type=click.FloatRange(min=0.1),
    default=DEFAULT_TIMEOUT,
    show_default=True,
    help="Seconds each step of a check may take.",
)
@click.option(
    "--mta-sts-port",
    "sts_port",
    type=click.IntRange(1, 65535),
    default=HTTPS_PORT,
    show_default=True,
    help="HTTPS port of mta-sts.DOMAIN (for test setups).",
)
def mx(
    domain: str,
    dns_server: str | None,
    as_json: bool,
    check: bool,
    port: int,
    ca_file: Path | None,
    helo: str | None,
    timeout: float,
    sts_port: int,
) -> None:
    """Show where mail for DOMAIN goes: MX hosts, addresses, DNSSEC, and health.

    Replaces `nslookup -q=mx DOMAIN` plus the manual follow-ups: each MX host's
    addresses, implicit and null MX spelled out, internationalised names shown
    both ways, and with --check a connection to every host.
    """
    try:
        if dns_server is not None:
            address, dns_port = parse_nameserver(dns_server)
            network = ipaddress.ip_network(address)
            resolver = DnsResolver([(address, dns_port)], timeout=timeout, trusted=[network])
        else:
            resolver = DnsResolver(timeout=timeout)
    except ValueError as exc:
        _usage(f"--dns: {exc}" if dns_server else f"no resolver: {exc}")
    settings = CheckSettings(
        port=port,
        helo_name=helo or platform.node() or "localhost",
        ca_file=ca_file,
        timeout=timeout,
        sts_port=sts_port,
    )
    try:
        report = asyncio.run(build_report(domain, resolver, check=check, settings=settings))
    except MxUsageError as exc:
        _usage(str(exc))
    if as_json:
        click.echo(json.dumps(report.as_dict(), indent=2, ensure_ascii=False))
    else:
        click.echo(render(report))
    if report.problems:
        sys.exit(EXIT_PROBLEMS)
