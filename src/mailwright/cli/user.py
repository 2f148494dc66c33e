"""``mailwright user add|passwd|del|list``: manage the accounts that may AUTH.

Passwords are read from a hidden, confirmed prompt, or with ``--password-stdin`` from
the first line of standard input (for scripts: ``printf '%s\\n' "$pw" | mailwright user
add ...``).  There is deliberately no way to pass a password as an argument: arguments
are visible to every local user in ``ps`` and end up in shell history.

Changes are written to ``<data_dir>/users.json``; a running server picks them up at
its next lookup, without a restart.  A rewrite keeps the file's owner and mode; a new
file belongs to ``[process] user``/``group`` when the command runs as root, so the
server (which drops to that user) can still read it.  Errors are one line on stderr
with exit status 2 (a usage or configuration problem, as everywhere in the CLI).
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import NoReturn

import click

from mailwright.accounts.users import UserError, UserStore
from mailwright.cli.configload import EXIT_CONFIG, load_or_exit
from mailwright.runtime.privileges import PrivilegeError, account_ids

CRAM_HELP = (
    "Also store a CRAM-MD5 secret.  CRAM-MD5 needs a plaintext-equivalent secret: "
    "anyone who can read the user file can then log in as this user.  Enable only "
    "for clients that cannot use SCRAM-SHA-256 or PLAIN over TLS."
)

config_option = click.option(
    "-c",
    "--config",
    "config_path",
    type=click.Path(path_type=Path),
    default=None,
    help="TOML configuration file (default: the embedded configuration, "
    "data in ./mailwright-data).",
)
stdin_option = click.option(
    "--password-stdin",
    is_flag=True,
    help="Read the password from the first line of standard input instead of a prompt.",
)


def _fail(message: str) -> NoReturn:
    click.echo(f"mailwright: {message}", err=True)
    sys.exit(EXIT_CONFIG)


def _store(config_path: Path | None) -> UserStore:
    config = load_or_exit(config_path)
    try:
        owner = account_ids(config.process) if os.geteuid() == 0 else None
    except PrivilegeError as exc:
        _fail(f"process: {exc}")
    return UserStore.in_data_dir(config.data_dir, new_file_owner=owner)


def _read_password(from_stdin: bool) -> str:
    if from_stdin:
        line = sys.stdin.readline()
        password = line.removesuffix("\n").removesuffix("\r")
    else:
        password = click.prompt("Password", hide_input=True, confirmation_prompt=True, err=True)
    if not password:
        _fail("empty password")
    return password


@contextlib.contextmanager
def _errors() -> Iterator[None]:
    """Store errors become one line on stderr and exit status 2."""
    try:
        yield
    except UserError as exc:
        _fail(str(exc))
    except OSError as exc:
        _fail(f"user file: {exc.strerror or exc}")


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def user() -> None:
    """Manage the users that may authenticate (SMTP AUTH)."""


@user.command("add")
@click.argument("login")
@click.option(
    "-a",
    "--address",
    "addresses",
    multiple=True,
    metavar="ADDR",
    help="An extra address the user may send as (repeatable).  LOGIN is always one.",
)
@click.option("--cram-md5", is_flag=True, help=CRAM_HELP)
@stdin_option
@config_option
def add(
    login: str,
    addresses: tuple[str, ...],
    cram_md5: bool,
    password_stdin: bool,
    config_path: Path | None,
) -> None:
    """Create a user whose login is its primary address LOGIN."""
    store = _store(config_path)
    with _errors():
        existing = store.get(login)
        if existing is not None:  # fail before asking for (and hashing) a password
            raise UserError(f"user {existing.login} already exists")
        password = _read_password(password_stdin)
        info = store.add(login, password, addresses=addresses, cram_md5=cram_md5)
    click.echo(f"added {info.login}")


@user.command("passwd")
@click.argument("login")
@click.option(
    "--cram-md5/--no-cram-md5",
    default=None,
    help=CRAM_HELP + "  Default: keep the user's current setting.",
)
@stdin_option
@config_option
def passwd(
    login: str, cram_md5: bool | None, password_stdin: bool, config_path: Path | None
) -> None:
    """Set a new password for LOGIN (all its secrets are replaced)."""
    store = _store(config_path)
    with _errors():
        if store.get(login) is None:
            raise UserError(f"no such user: {login}")
        password = _read_password(password_stdin)
        store.set_password(login, password, cram_md5=cram_md5)
    click.echo(f"password changed for {login}")


@user.command("del")
@click.argument("login")
@config_option
def delete(login: str, config_path: Path | None) -> None:
    """Delete the user LOGIN."""
    store = _store(config_path)
    with _errors():
        store.delete(login)
    click.echo(f"deleted {login}")


@user.command("list")
@config_option
def list_users(config_path: Path | None) -> None:
    """List users with their addresses and usable mechanisms (never secrets)."""
    store = _store(config_path)
    with _errors():
        users = store.list()
    for info in users:
        click.echo(
            f"{info.login}  addresses: {', '.join(info.addresses)}"
            f"  mechanisms: {' '.join(info.mechanisms)}"
        )
