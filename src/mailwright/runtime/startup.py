"""Start-up checks and start-up failures, in one place for ``serve`` and ``check-config``.

``check(config)`` runs every check that needs no socket: the process user exists, the
data folder can be created and written by the user the server runs as, every
configured certificate and key loads, the users file is readable.  It never creates
or changes anything, so ``check-config`` can run it on a live server's file; ``App``
runs the very same function first thing, before it binds.  It collects every problem
(an operator fixes a file in one pass) and warns about a configuration that starts
but will not work as meant: no ``[[domain]]`` (every recipient refused, postmaster
included) or a local domain whose postmaster nobody receives (RFC 5321 §4.5.1).

``describe_failure`` turns what can still go wrong once the server binds and spawns
(a port in use, the spool locked by another server, a session process or the
delivery worker that does not start) into the same kind of line: ``<thing>:
<problem>``, which the CLI prints as ``mailwright: cannot start: ...`` with exit
status 2.  Nothing else formats start-up errors.

Permissions are judged from mode bits and ownership (POSIX ACLs are not read): what
``drop_privileges`` will leave the server with is not what this process has now.
"""

from __future__ import annotations

import errno
import os
import pwd
import stat
import sys
from dataclasses import dataclass, field
from pathlib import Path

from mailwright.accounts.directory import LocalDirectory
from mailwright.accounts.users import UserError, UserStore
from mailwright.config import Config, ConfigError, ListenerConfig, TlsConfig
from mailwright.delivery.relay.build import credentials
from mailwright.net.listener import ListenerError
from mailwright.net.tls import TlsError, TlsManager
from mailwright.runtime.privileges import PrivilegeError, account_ids
from mailwright.runtime.sessionpool import HandoverError
from mailwright.spool.store import SpoolError


@dataclass
class Findings:
    """``problems`` keep the server from starting; ``warnings`` do not."""

    problems: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


class StartupError(Exception):
    """The server cannot start; ``problems`` holds one ``<thing>: <problem>`` each."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = problems


class BindError(Exception):
    """A listener could not bind its address (App wraps the ``OSError``)."""

    def __init__(self, listener: ListenerConfig, error: OSError) -> None:
        super().__init__(str(error))
        self.listener = listener
        self.error = error


@dataclass(frozen=True)
class _Identity:
    """Who the server runs as once it has started (after any privilege drop)."""

    uid: int
    gids: frozenset[int]
    name: str
    dropping: bool  # a different identity from this process's (root dropping to it)


def check(config: Config) -> Findings:
    """Every check ``serve`` makes before binding; creates and changes nothing."""
    found = Findings()
    identity = _identity(config, found)
    if identity is not None and identity.dropping:
        _check_interpreter(config, identity, found)
    if _check_data_dir(config.data_dir, identity, found):
        _check_users_file(config, found)  # else its error would only repeat that one
    _check_certificates(config, found)
    _check_password_files(config, found)
    _check_mail_is_accepted(config, found)
    return found


def describe_failure(exc: BaseException, config: Config) -> str | None:
    """``<thing>: <problem>`` for a start-up failure, or None for one that is not
    (an interrupt, or a bug: those keep their traceback)."""
    match exc:
        case StartupError():
            return "; ".join(exc.problems)
        case BindError(listener=listener, error=error):
            where = _endpoint(listener)
            return f"listener {listener.role} {where}: {_strerror(error)}"
        case SpoolError():  # SpoolBusy too: "in use by another mailwright process (pid N)"
            return f"data_dir {config.data_dir}: {exc}"
        case TlsError():
            return f"tls: {exc}"
        case PrivilegeError():
            return f"process: {exc}"
        case ListenerError():
            return str(exc)
        case HandoverError():
            return f"session processes: {exc}"
        case OSError():
            where = f"{exc.filename}: " if exc.filename else ""
            return f"{where}{_strerror(exc)}"
    return None


# -- the checks ----------------------------------------------------------------------


def _identity(config: Config, found: Findings) -> _Identity | None:
    """Who the server will run as; None (and a problem) if the account is unknown.
    The account is looked up whoever runs the check: check-config as a normal user
    still finds a misspelt ``[process] user``."""
    try:
        ids = account_ids(config.process)
    except PrivilegeError as exc:
        found.problems.append(f"process: {exc}")
        return None
    euid = os.geteuid()
    if ids is None or euid != 0:  # no drop (drop_privileges refuses a non-root drop)
        return _Identity(euid, frozenset([os.getegid(), *os.getgroups()]), _name(euid), False)
    uid, gid = ids
    return _Identity(uid, frozenset([gid]), _name(uid), True)  # setgroups([gid])


def _name(uid: int) -> str:
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return str(uid)


def _check_data_dir(data_dir: Path, identity: _Identity | None, found: Findings) -> bool:
    """What must hold for the server to create ``data_dir`` and then work in it
    (``identity`` None: unknown, only what does not depend on it).  False if a
    problem was found."""
    path = Path(os.path.abspath(data_dir))
    existing = path
    while not os.path.lexists(existing):
        existing = existing.parent
    try:
        st = os.stat(existing)
    except OSError as exc:
        found.problems.append(f"data_dir {data_dir}: {existing}: {_strerror(exc)}")
        return False
    if not stat.S_ISDIR(st.st_mode):
        in_the_way = "" if existing == path else f" ({existing} is a file)"
        found.problems.append(f"data_dir {data_dir} is not a directory{in_the_way}")
        return False
    if identity is None:
        return True
    if identity.dropping:
        # Root creates data_dir and drop_privileges hands it (and all in it) to the
        # user; what the user still needs is a way in through every existing parent.
        for parent in reversed(path.parents):
            if os.path.isdir(parent) and not _may(parent, identity, _SEARCH):
                found.problems.append(
                    f"data_dir {data_dir} is not writable by user {identity.name}: "
                    f"{parent} does not let {identity.name} in"
                )
                return False
        return True
    # No drop: this process's own access is the server's (the spool's runner.lock is
    # the first file it writes).
    for target in (existing, path / "spool"):
        if os.path.isdir(target) and not os.access(target, os.W_OK | os.X_OK):
            found.problems.append(f"data_dir {data_dir} is not writable by user {identity.name}")
            return False
    return True


_SEARCH = (stat.S_IXUSR, stat.S_IXGRP, stat.S_IXOTH)


def _check_interpreter(config: Config, identity: _Identity, found: Findings) -> None:
    """The delivery worker and session processes are started after the privilege
    drop, with this interpreter: the user must be able to run it (a Python under
    /root is the classic way to fail here)."""
    if not (config.delivery.worker or config.smtp.processes):
        return
    interpreter = Path(sys.executable)
    real = Path(os.path.realpath(interpreter))
    parents = {*interpreter.parents, *real.parents}
    blocked = sorted(p for p in parents if not _may(p, identity, _SEARCH))
    if blocked or not _may(real, identity, _SEARCH):
        where = f"{blocked[0]} does not let {identity.name} in" if blocked else "not executable"
        found.problems.append(
            f"python {interpreter} cannot be run by user {identity.name} ({where}), "
            "which runs the delivery worker and session processes"
        )


def _may(path: Path, identity: _Identity, bits: tuple[int, int, int]) -> bool:
    """Whether ``identity`` has the permission ``bits`` (user, group, other) on
    ``path``, by the file's mode and owner; root may everything."""
    if identity.uid == 0:
        return True
    try:
        st = os.stat(path)
    except OSError:
        return False
    if st.st_uid == identity.uid:
        return bool(st.st_mode & bits[0])
    if st.st_gid in identity.gids:
        return bool(st.st_mode & bits[1])
    return bool(st.st_mode & bits[2])


def _check_certificates(config: Config, found: Findings) -> None:
    """Each configured certificate loads exactly as ``serve`` loads it (TlsManager),
    one at a time so every bad pair is named.  A self-signed certificate is made at
    start-up; the data_dir check covers where it goes."""
    for cert in config.tls.certificates:
        single = TlsConfig(certificates=[cert], min_version=config.tls.min_version)
        try:
            TlsManager(single, config.data_dir, config.smtp.hostname).load()
        except TlsError as exc:
            found.problems.append(f"tls: {exc}")


def _check_password_files(config: Config, found: Findings) -> None:
    """Each relay ``password_file`` reads as the relay reads it, at start-up."""
    try:
        credentials(config)
    except ConfigError as exc:
        found.problems.extend(exc.problems)


def _check_users_file(config: Config, found: Findings) -> None:
    try:
        UserStore.in_data_dir(config.data_dir).list()
    except UserError as exc:
        found.problems.append(f"users file: {exc}")


def _check_mail_is_accepted(config: Config, found: Findings) -> None:
    if not config.domains:
        found.warnings.append(
            "no [[domain]] is configured: every recipient will be refused with "
            "550 5.7.1 Relay access denied, postmaster included (only authenticated "
            "users and relay.trusted_networks may relay)"
        )
        return
    directory = LocalDirectory(config.domains, config.delivery.recipient_delimiter)
    for domain in config.domains:
        if directory.resolve(f"postmaster@{domain.name}") is None:
            # RFC 5321 §4.5.1: every SMTP server must accept mail for postmaster.
            found.warnings.append(
                f"domain {domain.name}: no mailbox, alias or catch-all receives "
                f"postmaster@{domain.name} (RFC 5321 section 4.5.1 requires one)"
            )


# -- wording ---------------------------------------------------------------------------


def cannot_run(what: str, command: list[str], exc: OSError) -> str:
    """A child process (delivery worker, session process) that could not be spawned."""
    return f"{what}: cannot run {command[0]}: {_strerror(exc)}"


def _endpoint(listener: ListenerConfig) -> str:
    if ":" in listener.address:
        return f"[{listener.address}]:{listener.port}"
    return f"{listener.address}:{listener.port}"


def _strerror(exc: OSError) -> str:
    """``address already in use``: the C library's words, without ``[Errno 98]``."""
    if exc.errno is not None and exc.errno in errno.errorcode:
        text = os.strerror(exc.errno)
    else:
        text = exc.strerror or str(exc)
    return text[:1].lower() + text[1:]
