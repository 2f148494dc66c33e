"""``mailwright session HOST[:PORT]``: the interactive SMTP session (telnet done right).

Argument parsing and the one-line errors only; the session is
``mailwright.client.interactive`` (exit statuses: ``client.interactive.terminal``).
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path
from typing import NoReturn

import click

from mailwright.cli.configload import EXIT_CONFIG

EXIT_INTERRUPTED = 130  # 128 + SIGINT, as shells report it

HELP = """Talk SMTP to HOST interactively, as with telnet, but with a real prompt.

\b
HOST[:PORT] is a name or an address; IPv6 as [::1]:2525.  PORT defaults to 25.

Type commands as you would in telnet.  Each reply is shown with a short
explanation of what it means.  The prompt edits the line (arrows, Backspace,
Ctrl-A/E/W/U), keeps a history across sessions (Up, Ctrl-R) and completes with
Tab: the SMTP verbs, the extensions the server advertised in its EHLO reply, and
the helpers below.

\b
PROMPTS AND HELPERS
  smtp>             a command line: parsed and written by mailwright's protocol
                    core; a line it cannot read is refused with the reason, and
                    nothing is sent (use raw mode to send it anyway)
  data>             after DATA's 354: the message, line by line; a line with a
                    lone . ends it; dots at a line start are doubled for you;
                    every line is message text here, helpers included
  starttls          STARTTLS and the TLS handshake; send EHLO again afterwards
  auth MECH USER    AUTH plain|login|cram-md5|scram-sha-256 as USER; the password
                    is asked for without echo, the base64 is done for you, and
                    the transcript shows <redacted> for the secrets
  raw               toggle raw mode (raw>): lines go out exactly as typed, with
                    the escapes \\r \\n \\t \\\\ \\xHH; a line holding a \\r or \\n
                    escape is sent with no CRLF added (a bare-LF test: raw, DATA,
                    then hello\\n.\\n); leaving raw mode, send EHLO or HELO first
  save FILE         write the transcript so far to FILE
  ?                 list these; Ctrl-D sends QUIT and ends the session

\b
TRANSCRIPT MARKERS (as swaks shows them)
  ->  sent   <-  received   ~>  <~  the same inside TLS   ==  local events

\b
EXIT STATUS
  0   the session ended by QUIT or Ctrl-D
  1   the server closed the connection, or it failed (reply timeout, TLS
      handshake, a malformed reply)
  2   usage error (bad HOST:PORT, --dns, transcript or history file; no terminal)
  3   no connection (refused, timed out, name not found, TLS on connect failed)
  130 interrupted (Ctrl-C while waiting for a reply)

\b
EXAMPLES
  mailwright session mx.example.org
  mailwright session 127.0.0.1:2525 --helo client.example.org
  mailwright session mail.example.org:465 --tls-on-connect
  mailwright session mx.example.test:2525 --dns 127.0.0.1:5353
  mailwright session [::1]:2525 --no-history --transcript dialog.txt

\b
A classic dialog (what telnet users type; here with editing and explanations):
  smtp> HELO client.example.org
  smtp> MAIL FROM:<alice@example.org>
  smtp> RCPT TO:<bob@example.net>
  smtp> DATA
  data> Subject: test
  data>
  data> Hello Bob.
  data> .
  smtp> QUIT

History is kept in $XDG_STATE_HOME/mailwright/session_history (by default
~/.local/state/mailwright/session_history); message lines and passwords are not.
"""


def _fail(message: str, status: int = EXIT_CONFIG) -> NoReturn:
    click.echo(f"mailwright: session: {message}", err=True)
    sys.exit(status)


@click.command(help=HELP, context_settings={"max_content_width": 100})
@click.argument("target", metavar="HOST[:PORT]")
@click.option("--helo", metavar="NAME", help="Send EHLO NAME right after the greeting.")
@click.option(
    "--tls-on-connect",
    is_flag=True,
    help="TLS from the first octet (implicit TLS, RFC 8314; port 465).",
)
@click.option(
    "--dns",
    "dns",
    metavar="IP[:PORT]",
    help="Look HOST up at this nameserver instead of the system resolver.",
)
@click.option(
    "--transcript",
    "transcript",
    type=click.Path(path_type=Path, dir_okay=False),
    help="Write the transcript to FILE when the session ends (save FILE does it any time).",
)
@click.option("--no-history", is_flag=True, help="Keep no history file.")
def session(
    target: str,
    helo: str | None,
    tls_on_connect: bool,
    dns: str | None,
    transcript: Path | None,
    no_history: bool,
) -> None:
    # Imported here: prompt_toolkit is not worth loading for every other command.
    from mailwright.client.interactive import (
        EXIT_CONNECT,
        SessionOptions,
        SessionStartError,
        history_path,
        parse_dns,
        parse_host_port,
        prepare_history,
        resolve,
        run_session,
    )

    try:
        host, port = parse_host_port(target)
        nameserver = parse_dns(dns) if dns is not None else None
    except ValueError as exc:
        _fail(str(exc))
    if helo is not None and (not helo.strip() or " " in helo.strip()):
        _fail(f"--helo {helo!r}: one domain name or address literal is needed")
    if transcript is not None:
        try:
            transcript.open("a").close()
        except OSError as exc:
            _fail(f"--transcript {transcript}: {exc.strerror or exc}")
    if not sys.stdin.isatty() or not sys.stdout.isatty():
        _fail("needs a terminal (for scripts, use mailwright send)")
    history = None
    if not no_history:
        history = history_path()
        try:
            prepare_history(history)
        except ValueError as exc:
            _fail(f"{exc} (use --no-history)")
    try:
        address = asyncio.run(resolve(host, nameserver))
    except ValueError as exc:
        _fail(str(exc), EXIT_CONNECT)
    options = SessionOptions(
        host=host,
        address=address,
        port=port,
        helo=helo.strip() if helo else None,
        tls_on_connect=tls_on_connect,
        history=history,
        transcript=transcript,
    )
    try:
        status = asyncio.run(run_session(options))
    except SessionStartError as exc:
        _fail(str(exc), EXIT_CONNECT)
    except KeyboardInterrupt:
        click.echo("mailwright: session: interrupted", err=True)
        sys.exit(EXIT_INTERRUPTED)
    sys.exit(status)
