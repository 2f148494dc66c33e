"""``mailwright probe HOST[:PORT]``: arguments in, the report out (logic in
``client.probe``)."""

from __future__ import annotations

import asyncio
import json
import socket
import sys
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn

import click

from mailwright.cli.configload import EXIT_CONFIG

if TYPE_CHECKING:  # imported when the command runs: `mailwright --help` stays fast
    from mailwright.client.probe import Report

# Exit statuses (listed in --help).
EXIT_OK = 0  # probed; nothing at or above --fail-on (or no --fail-on)
EXIT_FINDINGS = 1  # probed; a finding at or above --fail-on
EXIT_UNREACHABLE = 3  # no SMTP session at all: connect, greeting or EHLO/HELO failed
EXIT_INTERRUPTED = 130  # 128 + SIGINT, as shells report a command ended by Ctrl-C

_SEVERITY_COLOURS = {
    "critical": "magenta",
    "high": "red",
    "medium": "yellow",
    "low": "cyan",
    "info": "white",
}

HELP = """Report on an SMTP server's configuration: what a stranger sees.

\b
Connects to HOST (port 25 unless given) and checks, in order:
  * the banner and EHLO capabilities;
  * STARTTLS and its certificate: expired, not yet valid, issued
    for another name, not from a trusted CA (system CAs plus --ca),
    and whether TLS 1.0/1.1 is still accepted;
  * implicit TLS on the submissions port (465, --smtps-port);
  * AUTH mechanisms, and whether AUTH is offered before TLS;
  * user enumeration with VRFY and EXPN (and RCPT with --user-probe;
    an MX that refuses unknown recipients at RCPT is doing right, so
    that is only user-enumeration-rcpt, info).

\b
Two intrusive tests run only when asked for, and only against HOST:
  --relay-test      tries the classic open-relay address forms
                    (user@other, user%other@host, "user@other"@host,
                    @host:user@other, other!user@host ...).  It never
                    sends DATA: each transaction ends with RSET.
  --smuggling-test  sends one message per end-of-data variant
                    (<LF>.<LF>, <LF>.<CRLF>, <CR>.<CRLF> ...) to your
                    own --to address, with a second message smuggled
                    behind the variant; a server that answers that
                    second transaction ends DATA too early.

\b
Each finding has a stable id, a severity (info, low, medium, high,
critical), a one-line explanation and what fixes it, e.g. open-relay,
auth-before-tls, no-starttls, expired-certificate,
certificate-name-mismatch, untrusted-certificate, user-enumeration,
smuggling-bare-lf.  --json prints them as one JSON object instead.

\b
Exit status:
  0    probed; no finding at or above --fail-on (always 0 without it)
  1    probed; a finding at or above --fail-on was found
  2    usage error (bad option, host or address)
  3    no SMTP session: connection, greeting or EHLO/HELO failed,
       or HOST does not resolve
  130  interrupted (Ctrl-C)

\b
Examples:
  mailwright probe mx.example.org
  mailwright probe 192.0.2.25:2525 --tls-name mx.example.org --ca ca.pem
  mailwright probe mx.example.org --user-probe postmaster@example.org
  mailwright probe mx.example.org --relay-test --fail-on high
  mailwright probe mx.example.org --smuggling-test --to me@example.org
  mailwright probe mx.example.org --json | jq '.findings[].id'
"""


def _fail(message: str) -> NoReturn:
    click.echo(f"mailwright probe: {message}", err=True)
    sys.exit(EXIT_CONFIG)


@click.command(help=HELP, context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("target", metavar="HOST[:PORT]")
@click.option("--port", type=click.IntRange(1, 65535), help="Port (default 25, or HOST:PORT).")
@click.option("--helo", metavar="NAME", help="Name for EHLO/HELO (default: this host's name).")
@click.option(
    "--timeout",
    type=click.FloatRange(min=0.1),
    default=30.0,
    show_default=True,
    help="Seconds to wait for each reply, connection or handshake.",
)
@click.option(
    "--ca",
    "ca_file",
    type=click.Path(path_type=Path, exists=True, dir_okay=False),
    help="Also trust this CA (PEM) when checking the certificate chain.",
)
@click.option(
    "--tls-name",
    metavar="NAME",
    help="The name the certificate must carry (default: HOST when it is a name).",
)
@click.option(
    "--smtps-port",
    type=click.IntRange(0, 65535),
    default=465,
    show_default=True,
    help="Port to try implicit TLS on; 0 skips the check.",
)
@click.option(
    "--user-probe",
    metavar="ADDRESS",
    help="An existing mailbox: VRFY/EXPN/RCPT ask about it and a random one.",
)
@click.option("--relay-test", is_flag=True, help="Try the open-relay address forms (no DATA).")
@click.option(
    "--relay-from",
    metavar="ADDRESS",
    default="relay-probe@example.com",
    show_default=True,
    help="MAIL FROM of the relay test.",
)
@click.option(
    "--relay-domain",
    metavar="DOMAIN",
    default="example.net",
    show_default=True,
    help="The foreign domain of the relay test's recipients.",
)
@click.option(
    "--smuggling-test", is_flag=True, help="Send the SMTP smuggling test messages to --to."
)
@click.option("--to", "to", metavar="ADDRESS", help="Your own address (--smuggling-test).")
@click.option(
    "--from",
    "mail_from",
    metavar="ADDRESS",
    help="MAIL FROM of the smuggling test (default: --to).",
)
@click.option("--dns", "dns", metavar="IP[:PORT]", help="Look HOST up with this DNS server.")
@click.option("--json", "as_json", is_flag=True, help="Print the report as one JSON object.")
@click.option(
    "--fail-on",
    metavar="SEVERITY",
    help="Exit 1 when a finding of this severity or worse is found "
    "(info, low, medium, high, critical).",
)
def probe(
    target: str,
    port: int | None,
    helo: str | None,
    timeout: float,
    ca_file: Path | None,
    tls_name: str | None,
    smtps_port: int,
    user_probe: str | None,
    relay_test: bool,
    relay_from: str,
    relay_domain: str,
    smuggling_test: bool,
    to: str | None,
    mail_from: str | None,
    dns: str | None,
    as_json: bool,
    fail_on: str | None,
) -> None:
    from mailwright.client.probe import ProbeSettings, Severity
    from mailwright.client.probe import probe as run_probe
    from mailwright.client.probe.dialog import is_ip_literal
    from mailwright.client.probe.target import (
        TargetError,
        check_address,
        check_domain,
        resolve,
        split_target,
    )
    from mailwright.dns.servers import parse_nameserver

    level = None
    if fail_on is not None:
        try:
            level = Severity.parse(fail_on)
        except ValueError as exc:
            _fail(f"--fail-on: {exc}")
    if smuggling_test and not to:
        _fail("--smuggling-test needs --to ADDRESS (your own mailbox)")
    if to and not smuggling_test:
        _fail("--to is for --smuggling-test")
    try:
        host, default_port = split_target(target)
        for option, value in (
            ("--to", to),
            ("--from", mail_from),
            ("--user-probe", user_probe),
            ("--relay-from", relay_from),
        ):
            if value is not None:
                check_address(value, option)
        check_domain(relay_domain, "--relay-domain")
    except TargetError as exc:
        _fail(str(exc))
    nameservers = None
    if dns is not None:
        try:
            nameservers = [parse_nameserver(dns)]
        except ValueError as exc:
            _fail(f"--dns: {exc}")
    settings = ProbeSettings(
        helo=helo or socket.gethostname() or "localhost",
        timeout=timeout,
        ca_file=ca_file,
        tls_name=tls_name,
        smtps_port=smtps_port,
        user_probe=user_probe,
        relay_test=relay_test,
        relay_from=relay_from,
        relay_domain=relay_domain,
        smuggling_to=to if smuggling_test else None,
        mail_from=mail_from,
    )

    async def main() -> Report:
        from mailwright.dns.resolver import DnsResolver

        resolver = None
        if not is_ip_literal(host):
            resolver = DnsResolver(nameservers, timeout=min(timeout, 5.0))
        resolved = await resolve(host, port or default_port, resolver)
        return await run_probe(resolved, settings)

    try:
        report = asyncio.run(main())
    except TargetError as exc:
        click.echo(f"mailwright probe: {exc}", err=True)
        sys.exit(EXIT_UNREACHABLE)
    except ValueError as exc:  # no nameservers in resolv.conf
        _fail(str(exc))
    except KeyboardInterrupt:
        sys.exit(EXIT_INTERRUPTED)
    if as_json:
        click.echo(json.dumps(report.to_json(), indent=2, ensure_ascii=False))
    else:
        _print(report)
    if report.failed is not None:
        sys.exit(EXIT_UNREACHABLE)
    if level is not None and report.at_or_above(level):
        sys.exit(EXIT_FINDINGS)
    sys.exit(EXIT_OK)


def _print(report: Report) -> None:
    click.echo(f"mailwright probe {report.target}")
    if report.failed is not None:
        click.echo(f"  cannot probe: {report.failed}")
        return
    facts = report.facts
    click.echo(f"  banner      {facts.get('banner', '-')}")
    extensions = facts.get("tls_extensions") or facts.get("extensions") or {}
    if extensions:
        shown = " ".join(f"{k} {v}".strip() for k, v in extensions.items())
        click.echo(f"  extensions  {shown}")
    tls = facts.get("tls")
    if tls:
        click.echo(f"  tls         {tls.get('version')} {tls.get('cipher')}")
        if "subject" in tls:
            click.echo(f"  certificate {tls['subject']} (issuer {tls['issuer']})")
            click.echo(f"              names {', '.join(tls['names']) or '-'}")
            click.echo(f"              valid {tls['not_before']} to {tls['not_after']}")
    click.echo("")
    if not report.findings:
        click.echo("  no findings")
    for item in report.sorted_findings():
        label = click.style(
            f"{item.severity.label:<8}", fg=_SEVERITY_COLOURS[item.severity.label], bold=True
        )
        click.echo(f"  {label} {item.id}: {item.detail}")
        click.echo(f"           why: {item.kind.explanation}")
        click.echo(f"           fix: {item.kind.fix}")
    for note in report.notes:
        click.echo(f"  note: {note}")
    if report.reply_notes:
        click.echo("")
        click.echo("  replies:")
        for reply, meaning in report.reply_notes.items():
            click.echo(f"    {reply}")
            click.echo(f"      = {meaning}")
    worst = report.worst
    click.echo("")
    click.echo(
        f"{len(report.findings)} finding(s)"
        + (f", worst: {worst.label}" if worst is not None else "")
    )
