"""The `mailwright` command.  Subcommands are registered explicitly, one module each."""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import click

from mailwright import __version__
from mailwright.cli.configload import EXIT_CONFIG, load_or_exit
from mailwright.config import Config, ConfigError, parse_listen, with_overrides


def _override_or_exit(config: Config, listen: tuple[str, ...], data_dir: Path | None) -> Config:
    """``serve --listen/--data-dir`` applied to ``config``; one line and exit 2 if bad."""
    listeners = []
    for spec in listen:
        try:
            listeners.append(parse_listen(spec))
        except ValueError as exc:
            click.echo(f"mailwright: --listen {spec}: {exc}", err=True)
            sys.exit(EXIT_CONFIG)
    try:
        return with_overrides(config, listeners=listeners, data_dir=data_dir)
    except ConfigError as exc:
        for line in str(exc).splitlines():
            click.echo(f"mailwright: {line}", err=True)
        sys.exit(EXIT_CONFIG)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="mailwright")
def cli() -> None:
    """mailwright: an SMTP server, queue and Maildir delivery in one command."""
    # Commands report a users-file problem themselves, in one line; the store's own
    # log line is for a server's debug log (obs.debuglog), and without a handler
    # logging's last-resort handler would print it to stderr as a second line.
    accounts = logging.getLogger("mailwright.accounts")
    if not any(isinstance(h, logging.NullHandler) for h in accounts.handlers):
        accounts.addHandler(logging.NullHandler())


@cli.command()
@click.option(
    "-c",
    "--config",
    "config_path",
    type=click.Path(path_type=Path),
    default=None,
    help="TOML configuration file (default: the embedded configuration).",
)
@click.option(
    "--listen",
    "listen",
    multiple=True,
    metavar="ROLE=ADDR:PORT",
    help="Listen here instead of the configured listeners (repeatable).  ROLE is "
    "inbound, submission or submissions; IPv6 as [::1]:2525; port 0 picks a free one.",
)
@click.option(
    "--data-dir",
    "data_dir",
    type=click.Path(path_type=Path),
    default=None,
    help="Keep spool, mailboxes, users and certificate here instead of data_dir.",
)
def serve(config_path: Path | None, listen: tuple[str, ...], data_dir: Path | None) -> None:
    """Run the mail server (embedded default: 127.0.0.1:2525, domain localhost)."""
    config = load_or_exit(config_path)
    if listen or data_dir is not None:
        config = _override_or_exit(config, listen, data_dir)
    if config_path is None:
        click.echo("mailwright: no config file given, using the embedded default")
    from mailwright.runtime.server import run
    from mailwright.runtime.startup import StartupError

    try:
        run(config, announce=lambda line: click.echo(line))
    except StartupError as exc:  # worded in one place: mailwright.runtime.startup
        for problem in exc.problems:
            click.echo(f"mailwright: cannot start: {problem}", err=True)
        sys.exit(EXIT_CONFIG)
    except KeyboardInterrupt:
        pass


@cli.command("check-config")
@click.argument("config_path", required=False, type=click.Path(path_type=Path))
def check_config(config_path: Path | None) -> None:
    """Run every check serve runs before binding; print a summary (exit 2 on errors).

    All problems are printed at once, one line each, then warnings (a configuration
    that starts but refuses all mail, or has no postmaster) as ``warning:`` lines.
    """
    from mailwright.runtime import startup

    config = load_or_exit(config_path)
    source = config_path or "embedded default"
    findings = startup.check(config)
    for problem in findings.problems:
        click.echo(f"mailwright: {source}: {problem}", err=True)
    for warning in findings.warnings:
        click.echo(f"mailwright: {source}: warning: {warning}", err=True)
    if findings.problems:
        sys.exit(EXIT_CONFIG)
    click.echo(f"{source}: ok")
    for listener in config.listeners:
        click.echo(f"  listener {listener.address}:{listener.port} ({listener.role})")
    for domain in config.domains:
        click.echo(
            f"  domain {domain.name}: {len(domain.mailboxes)} mailbox(es), "
            f"{len(domain.aliases)} alias(es)"
            + (f", catch-all {domain.catch_all}" if domain.catch_all else "")
        )
    if config.smtp.processes:
        click.echo(f"  sessions in {config.smtp.processes} session processes")
    click.echo(f"  data in {config.data_dir}")


from mailwright.cli.user import user  # noqa: E402  (registration kept in one place)

cli.add_command(user)

from mailwright.cli.queue import queue  # noqa: E402

cli.add_command(queue)

from mailwright.cli.probe import probe  # noqa: E402

cli.add_command(probe)

from mailwright.cli.explain import explain  # noqa: E402

cli.add_command(explain)

from mailwright.cli.mx import mx  # noqa: E402

cli.add_command(mx)

from mailwright.cli.session import session  # noqa: E402

cli.add_command(session)

from mailwright.cli.send import send  # noqa: E402

cli.add_command(send)


@cli.command(
    context_settings={"ignore_unknown_options": True, "help_option_names": []},
    add_help_option=False,
)
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
def sendmail(args: tuple[str, ...]) -> None:
    """Queue a message from standard input, as sendmail (-t -i -f FROM -F NAME ...)."""
    from mailwright.cli.sendmail import main as sendmail_main

    sendmail_main(list(args))


def main() -> None:
    # `ln -s $(which mailwright) /usr/sbin/sendmail` (and mailq): behave as that command.
    called_as = Path(sys.argv[0]).name
    if called_as == "sendmail":
        from mailwright.cli.sendmail import main as sendmail_main

        sendmail_main(sys.argv[1:])
    if called_as == "mailq":
        from mailwright.cli.queue import queue

        queue.main(["list", *sys.argv[1:]], prog_name="mailq")
    cli()
