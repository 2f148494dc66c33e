"""``mailwright send``: the command line of the test client (``mailwright.client``).

Only arguments, the password's source and printing live here; building the message,
choosing the server and the SMTP dialog are ``client.message``, ``client.target`` and
``client.send`` / ``client.bulk``.
"""

from __future__ import annotations

import asyncio
import getpass
import json
import os
import socket
import sys
from collections.abc import Coroutine
from pathlib import Path
from typing import Any, NoReturn, TypeVar

import click

from mailwright.client.bulk import BulkResult, send_bulk
from mailwright.client.message import MessageError, MessageSpec, build_message
from mailwright.client.outcome import EXIT_CONNECT, EXIT_USAGE, MEANINGS
from mailwright.client.send import QUIT_AFTER, SendOptions, SendReport, TlsChoice, send_one
from mailwright.client.target import TargetError, split_host_port
from mailwright.client.transcript import STYLES, Line, Recorder

T = TypeVar("T")

DNS_PORT = 53

EXIT_TABLE = "\n".join(f"  {code:>3}  {text}" for code, text in sorted(MEANINGS.items()))

HELP = f"""Send a test message and show the SMTP dialog, as swaks does.

\b
Connects to --server (or to the MX hosts of the first recipient's domain, each MX
and address in turn until one answers), says EHLO, optionally STARTTLS and AUTH,
sends one message and prints every line both ways: "<-" from the server, "->" to
it, "<~"/"~>" inside TLS, "===" what the client did, "***" what went wrong, each
with the seconds since the start, then one summary line.  AUTH secrets are shown
as ******** unless --show-secrets.  The default message is swaks' (Date, To, From,
Subject "test <date>", Message-Id, X-Mailer: mailwright; "This is a test mailing").

\b
The password for --auth comes from a prompt, --password-env VAR or --password-file
FILE, never from an argument (arguments are visible in ps and shell history).

\b
With --count N (and --concurrency C) it is a load generator: N messages over C
connections, a progress bar on a terminal, then messages/second and latency
percentiles (p50, p90, p99).

\b
EXIT STATUS
{EXIT_TABLE}

\b
EXAMPLES
  Replace the telnet dialog (HELO, MAIL FROM, RCPT TO, DATA, ., QUIT):
    mailwright send --server 127.0.0.1:2525 --from alice@example.org --to bob@localhost
  STARTTLS and AUTH on the submission port, password from the environment:
    MW_PW=secret mailwright send --server mail.example.org:587 --tls --auth PLAIN \\
      --user alice@example.org --password-env MW_PW --to bob@example.net
  Implicit TLS, certificate verified against a private CA:
    mailwright send --server mail.example.org --tls-on-connect --tls-verify --tls-ca ca.pem ...
  The MX of the recipient's domain, asking a given DNS server:
    mailwright send --to postmaster@example.net --dns 127.0.0.1:5353
  Only check that a recipient is accepted:
    mailwright send --server mx.example.net --to bob@example.net --quit-after rcpt
  A message with HTML and an attachment, over BDAT, as JSON:
    mailwright send --server ... --html @page.html --attach report.pdf --bdat --json
  Load test: 20000 messages over 50 connections:
    mailwright send --server 127.0.0.1:2525 --to sink@localhost --count 20000 --concurrency 50
"""


def _run(main: Coroutine[Any, Any, T]) -> T:
    """Run ``main`` on uvloop when it is installed (DESIGN principle 7: the load
    generator's speed is mostly the event loop's)."""
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a default dependency on Linux
        return asyncio.run(main)
    return uvloop.run(main)


def _fail(message: str) -> NoReturn:
    click.echo(f"mailwright send: {message}", err=True)
    sys.exit(EXIT_USAGE)


def _split(values: tuple[str, ...]) -> tuple[str, ...]:
    """Repeatable options that also take comma lists: --to a,b --to c."""
    return tuple(part.strip() for value in values for part in value.split(",") if part.strip())


def _text(value: str | None, option: str) -> str | None:
    """TEXT, @FILE or - (standard input)."""
    if value is None:
        return None
    if value == "-":
        return sys.stdin.read()
    if value.startswith("@"):
        try:
            return Path(value[1:]).read_text("utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            _fail(f"{option} {value}: {getattr(exc, 'strerror', None) or exc}")
    return value


def _password(password_env: str | None, password_file: Path | None, user: str) -> str:
    if password_env is not None:
        value = os.environ.get(password_env)
        if value is None:
            _fail(f"--password-env {password_env}: not set in the environment")
        return value
    if password_file is not None:
        try:
            lines = password_file.read_text("utf-8").splitlines()
        except (OSError, UnicodeDecodeError) as exc:
            _fail(f"--password-file {password_file}: {getattr(exc, 'strerror', None) or exc}")
        return lines[0] if lines else ""
    if not sys.stdin.isatty():
        _fail("--auth needs a password: --password-env VAR, --password-file FILE or a terminal")
    return getpass.getpass(f"Password for {user}: ")


def _nameservers(values: tuple[str, ...]) -> tuple[tuple[str, int], ...] | None:
    if not values:
        return None
    try:
        return tuple(split_host_port(v, DNS_PORT) for v in values)
    except TargetError as exc:
        _fail(f"--dns: {exc}")


class _Printer:
    """Transcript lines to stdout as they come: coloured by rich on a terminal."""

    def __init__(self, colour: bool) -> None:
        self.console = None
        if colour:
            from rich.console import Console

            self.console = Console(highlight=False, soft_wrap=True)

    def line(self, line: Line) -> None:
        self.text(line.render(), STYLES[line.kind])

    def text(self, text: str, style: str = "") -> None:
        if self.console is not None:
            from rich.text import Text

            self.console.print(Text(text, style=style))
        else:
            click.echo(text)


def _run_bulk(opts: SendOptions, count: int, concurrency: int, as_json: bool) -> int:
    if sys.stderr.isatty() and not as_json:
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn

        with Progress(
            "[progress.description]{task.description}",
            BarColumn(),
            MofNCompleteColumn(),
            TimeRemainingColumn(),
            console=Console(file=sys.stderr),
        ) as bar:
            task = bar.add_task("sending", total=count)
            result = _run(send_bulk(opts, count, concurrency, lambda n: bar.advance(task, n)))
    else:
        result = _run(send_bulk(opts, count, concurrency))
    return _bulk_report(result, as_json)


def _bulk_report(result: BulkResult, as_json: bool) -> int:
    if as_json:
        click.echo(json.dumps(result.as_json()))
    else:
        click.echo(result.summary())
        for reason, n in sorted(result.errors.items(), key=lambda kv: -kv[1]):
            click.echo(f"  {n} x {reason}", err=True)
    return 0 if result.failed == 0 else EXIT_CONNECT


@click.command(help=HELP, context_settings={"max_content_width": 100})
@click.option("--server", "-s", metavar="HOST[:PORT]", help="Connect here (default: MX lookup).")
@click.option("--port", "-p", type=click.IntRange(1, 65535), help="Port (25; 24 LMTP; 465 TLS).")
@click.option("--protocol", type=click.Choice(["smtp", "lmtp"]), default="smtp", show_default=True)
@click.option("--helo", metavar="NAME", help="EHLO/LHLO name (default: this host's name).")
@click.option("-4", "ipv4", is_flag=True, help="IPv4 addresses only.")
@click.option("-6", "ipv6", is_flag=True, help="IPv6 addresses only.")
@click.option("--dns", multiple=True, metavar="IP[:PORT]", help="DNS server for lookups.")
@click.option("--from", "-f", "mail_from", metavar="ADDR", help="Envelope sender and From:.")
@click.option("--to", "-t", multiple=True, metavar="ADDR[,ADDR]", help="Recipient (repeatable).")
@click.option("--cc", multiple=True, metavar="ADDR[,ADDR]", help="Cc: recipient (repeatable).")
@click.option("--bcc", multiple=True, metavar="ADDR[,ADDR]", help="Envelope-only recipient.")
@click.option("--header", "headers", multiple=True, metavar='"NAME: VALUE"', help="Add/replace.")
@click.option("--subject", help='Subject (default "test <date>").')
@click.option("--body", metavar="TEXT|@FILE|-", help="The text body.")
@click.option("--html", metavar="TEXT|@FILE", help="An HTML alternative to the body.")
@click.option("--attach", multiple=True, type=click.Path(path_type=Path), help="Attach FILE.")
@click.option("--data", "data_file", metavar="FILE|-", help="Send FILE as the whole message.")
@click.option("--tls", "tls_required", is_flag=True, help="STARTTLS, required.")
@click.option("--tls-optional", is_flag=True, help="STARTTLS when offered.")
@click.option("--tls-on-connect", is_flag=True, help="Implicit TLS (port 465, RFC 8314).")
@click.option("--tls-verify", is_flag=True, help="Fail unless the certificate verifies.")
@click.option("--tls-ca", type=click.Path(path_type=Path), help="Extra trusted CA (PEM).")
@click.option("--tls-sni", metavar="NAME", help="SNI and certificate name to expect.")
@click.option(
    "--auth",
    type=click.Choice(["PLAIN", "LOGIN", "CRAM-MD5", "SCRAM-SHA-256"], case_sensitive=False),
    help="AUTH mechanism (needs --user).",
)
@click.option("--user", "-u", help="AUTH user name.")
@click.option("--password-env", metavar="VAR", help="Read the AUTH password from $VAR.")
@click.option("--password-file", type=click.Path(path_type=Path), help="First line is it.")
@click.option("--pipeline", is_flag=True, help="Use PIPELINING when offered (RFC 2920).")
@click.option(
    "--bdat",
    is_flag=False,
    flag_value=0,
    default=None,
    type=click.IntRange(0),
    metavar="[CHUNK]",
    help="Use BDAT when offered (RFC 3030), CHUNK octets a chunk.",
)
@click.option("--8bitmime", "eight_bit", is_flag=True, help="Declare BODY=8BITMIME.")
@click.option("--smtputf8", is_flag=True, help="Ask for SMTPUTF8 (RFC 6531).")
@click.option("--dsn-notify", metavar="NEVER|SUCCESS,FAILURE,DELAY", help="RFC 3461 NOTIFY.")
@click.option("--dsn-ret", type=click.Choice(["FULL", "HDRS"], case_sensitive=False))
@click.option("--envid", metavar="ID", help="RFC 3461 ENVID.")
@click.option("--quit-after", type=click.Choice(list(QUIT_AFTER)), help="Stop there, QUIT.")
@click.option("--timeout", type=click.FloatRange(min=0.001), default=30.0, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="One JSON object instead of the dialog.")
@click.option("--quiet", "-q", is_flag=True, help="Only the summary line.")
@click.option("--show-secrets", is_flag=True, help="Do not redact AUTH exchanges.")
@click.option("--no-color", is_flag=True, help="No colour even on a terminal.")
@click.option("--count", type=click.IntRange(1), default=1, help="Send N messages (bulk).")
@click.option("--concurrency", type=click.IntRange(1), default=1, help="Over C connections.")
def send(**kw: object) -> None:
    sys.exit(_main(**kw))  # type: ignore[arg-type]


def _main(  # one parameter per option
    server: str | None,
    port: int | None,
    protocol: str,
    helo: str | None,
    ipv4: bool,
    ipv6: bool,
    dns: tuple[str, ...],
    mail_from: str | None,
    to: tuple[str, ...],
    cc: tuple[str, ...],
    bcc: tuple[str, ...],
    headers: tuple[str, ...],
    subject: str | None,
    body: str | None,
    html: str | None,
    attach: tuple[Path, ...],
    data_file: str | None,
    tls_required: bool,
    tls_optional: bool,
    tls_on_connect: bool,
    tls_verify: bool,
    tls_ca: Path | None,
    tls_sni: str | None,
    auth: str | None,
    user: str | None,
    password_env: str | None,
    password_file: Path | None,
    pipeline: bool,
    bdat: int | None,
    eight_bit: bool,
    smtputf8: bool,
    dsn_notify: str | None,
    dsn_ret: str | None,
    envid: str | None,
    quit_after: str | None,
    timeout: float,
    as_json: bool,
    quiet: bool,
    show_secrets: bool,
    no_color: bool,
    count: int,
    concurrency: int,
) -> int:
    if ipv4 and ipv6:
        _fail("-4 and -6 exclude each other")
    if sum((tls_required, tls_optional, tls_on_connect)) > 1:
        _fail("choose one of --tls, --tls-optional, --tls-on-connect")
    if tls_verify and not (tls_required or tls_optional or tls_on_connect):
        tls_required = True  # verifying implies TLS
    if auth is not None and not user:
        _fail("--auth needs --user")
    if data_file is not None and (body or html or attach or headers or subject):
        _fail("--data sends FILE as is: no --body, --html, --attach, --header, --subject")
    if server is not None:
        try:
            split_host_port(server, 25)
        except TargetError as exc:
            _fail(f"--server: {exc}")
    recipients_to, recipients_cc, recipients_bcc = _split(to), _split(cc), _split(bcc)
    recipients = (*recipients_to, *recipients_cc, *recipients_bcc)
    if not recipients:
        _fail("no recipient: give --to ADDR")
    notify: tuple[str, ...] = ()
    if dsn_notify:
        notify = tuple(p.strip().upper() for p in dsn_notify.split(",") if p.strip())
        allowed = {"NEVER", "SUCCESS", "FAILURE", "DELAY"}
        if not set(notify) <= allowed or ("NEVER" in notify and len(notify) > 1):
            _fail(f"--dsn-notify {dsn_notify}: NEVER, or some of SUCCESS,FAILURE,DELAY")
    hostname = helo or socket.getfqdn() or "localhost"
    sender = mail_from if mail_from is not None else f"{getpass.getuser()}@{hostname}"
    if data_file is not None:
        try:
            message = sys.stdin.buffer.read() if data_file == "-" else Path(data_file).read_bytes()
        except OSError as exc:
            _fail(f"--data {data_file}: {exc.strerror or exc}")
    else:
        spec = MessageSpec(
            mail_from=sender,
            to=recipients_to,
            cc=recipients_cc,
            headers=headers,
            subject=subject,
            body=_text(body, "--body"),
            html=_text(html, "--html"),
            attachments=attach,
        )
        try:
            message = build_message(spec, hostname=hostname)
        except MessageError as exc:
            _fail(str(exc))
    tls = TlsChoice.NONE
    if tls_required:
        tls = TlsChoice.REQUIRED
    elif tls_optional:
        tls = TlsChoice.OPTIONAL
    elif tls_on_connect:
        tls = TlsChoice.ON_CONNECT
    password = _password(password_env, password_file, user or "") if auth else ""
    opts = SendOptions(
        mail_from=sender,
        recipients=recipients,
        message=message,
        server=server,
        port=port,
        lmtp=protocol == "lmtp",
        helo=hostname,
        family=4 if ipv4 else 6 if ipv6 else None,
        nameservers=_nameservers(dns),
        tls=tls,
        tls_verify=tls_verify,
        tls_ca=tls_ca,
        tls_sni=tls_sni,
        auth=auth.upper() if auth else None,
        user=user or "",
        password=password,
        pipeline=pipeline,
        bdat=bdat,
        eight_bit=eight_bit,
        smtputf8=smtputf8,
        dsn_notify=notify,
        dsn_ret=dsn_ret.upper() if dsn_ret else None,
        envid=envid,
        quit_after=quit_after,
        timeout=timeout,
    )
    if count > 1:
        try:
            return _run_bulk(opts, count, concurrency, as_json)
        except TargetError as exc:
            click.echo(f"mailwright send: {exc}", err=True)
            return EXIT_CONNECT
    live = not as_json and not quiet
    colour = live and not no_color and sys.stdout.isatty()
    printer = _Printer(colour)
    recorder = Recorder(show_secrets=show_secrets, on_line=printer.line if live else None)
    report: SendReport = _run(send_one(opts, recorder))
    if as_json:
        click.echo(json.dumps(report.as_json(), ensure_ascii=False))
    else:
        if report.status != 0 and report.explanation():  # above the one summary line
            printer.text(f"== why: {report.explanation()}", "yellow")
        printer.text(report.summary(), "bold green" if report.status == 0 else "bold red")
    return report.status
