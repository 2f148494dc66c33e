"""A private Dovecot IMAP server over a copy of one Maildir, for interop tests.

Dovecot runs in the foreground (``dovecot -F -c <conf>``) as a child of the test, with
everything in a private temporary folder: the configuration (nothing is read from
``/etc/dovecot``), ``base_dir``, ``state_dir``, the log, and the Maildir it serves.
It listens on 127.0.0.1 only, on a port found free by binding port 0 first, without
TLS, and lets any user log in with PLAIN and ``PASSWORD`` (static passdb).

Dovecot refuses mail access as root ("Mail access not allowed for root"), so under
root (CI) the mail is owned by ``nobody`` and Dovecot switches to that user; as any
other user it runs as that user, rootless.  The folder under ``tempfile`` (not
pytest's ``tmp_path``, whose parent is private to the user who runs the tests) keeps
the mail reachable for ``nobody``.  It serves a *copy* of the Maildir (same names,
same bytes): Dovecot moves messages from ``new/`` to ``cur/`` and writes index files,
and the delivered Maildir stays as the server left it.

Every wait is bounded; the server is stopped with SIGTERM (its master ends its
children) and killed if it does not exit in time.
"""

from __future__ import annotations

import contextlib
import grp
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

HOST = "127.0.0.1"
PASSWORD = "secret"
START_TIMEOUT = 15.0  # s until the IMAP port accepts: master, config, imap-login
STOP_TIMEOUT = 10.0  # s for the master to end its children after SIGTERM
UNPRIVILEGED = "nobody"  # the mail user when the tests run as root


@dataclass(frozen=True)
class Dovecot:
    host: str
    port: int
    maildir: Path  # the copy Dovecot serves
    log: Path


def free_port() -> int:
    """A port nothing listens on now (the kernel's choice for port 0)."""
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def identity(mail_owner: pwd.struct_passwd | None) -> str:
    """Who Dovecot reads and writes mail as: ``mail_owner`` under root; None when we
    are not root (rootless: every service runs as us, none can chroot)."""
    if mail_owner is not None:
        return f"mail_uid = {mail_owner.pw_uid}\nmail_gid = {mail_owner.pw_gid}\n"
    me = pwd.getpwuid(os.getuid()).pw_name
    group = grp.getgrgid(os.getgid()).gr_name
    return (
        f"default_login_user = {me}\ndefault_internal_user = {me}\n"
        f"default_internal_group = {group}\n"
        "service anvil {\n  chroot =\n}\n"
    )


def private_folders(folder: Path, protocols: str) -> str:
    """The settings every private instance starts with: its own base, state and log
    (nothing from ``/etc/dovecot``), on loopback, without TLS."""
    return (
        f"base_dir = {folder / 'run'}\n"
        f"state_dir = {folder / 'state'}\n"
        f"log_path = {folder / 'dovecot.log'}\n"
        f"protocols = {protocols}\n"
        f"listen = {HOST}\n"
        "ssl = no\n"
    )


def config(folder: Path, maildir: Path, port: int, mail_owner: pwd.struct_passwd | None) -> str:
    """The IMAP server's whole configuration (see ``identity`` for ``mail_owner``)."""
    chroot = "" if mail_owner is not None else "  chroot =\n"
    return (
        private_folders(folder, "imap") + "disable_plaintext_auth = no\n"
        "auth_mechanisms = plain\n"
        "first_valid_uid = 1\n" + identity(mail_owner) + f"mail_location = maildir:{maildir}\n"
        f"passdb {{\n  driver = static\n  args = password={PASSWORD}\n}}\n"
        f"userdb {{\n  driver = static\n  args = home={folder / 'home'}\n}}\n"
        "service imap-login {\n"
        + chroot
        + f"  inet_listener imap {{\n    address = {HOST}\n    port = {port}\n  }}\n"
        "  inet_listener imaps {\n    port = 0\n  }\n"
        "}\n"
    )


def _chown_tree(root: Path, uid: int, gid: int) -> None:
    os.chown(root, uid, gid)
    for parent, dirs, files in os.walk(root):
        for name in dirs + files:
            os.chown(os.path.join(parent, name), uid, gid)


def _wait_for_port(proc: subprocess.Popen[bytes], port: int, folder: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while True:
        if proc.poll() is not None:
            raise AssertionError(f"dovecot exited ({proc.returncode}): {logs(folder)}")
        try:
            with socket.create_connection((HOST, port), timeout=1.0):
                return
        except OSError:
            if time.monotonic() >= deadline:
                raise AssertionError(
                    f"dovecot not listening on {port} after {START_TIMEOUT} s: {logs(folder)}"
                ) from None
            time.sleep(0.05)


def logs(folder: Path) -> str:
    """Its output (configuration errors, before the log is open) and its log."""
    return " | ".join(
        (folder / name).read_text("utf-8", "replace")
        for name in ("output", "dovecot.log")
        if (folder / name).exists()
    )


@contextlib.contextmanager
def running(
    exe: str,
    folder: Path,
    conf_text: str,
    wait_ready: Callable[[subprocess.Popen[bytes]], None],
) -> Iterator[None]:
    """Run ``exe -F`` with ``conf_text`` (written to ``folder/dovecot.conf``) until the
    block ends: ``wait_ready(proc)`` first (bounded, naming the logs on failure);
    SIGTERM at the end (the master ends its children), SIGKILL if it does not exit in
    time; ``folder`` removed."""
    proc: subprocess.Popen[bytes] | None = None
    try:
        conf = folder / "dovecot.conf"
        conf.write_text(conf_text)
        with open(folder / "output", "wb") as output:
            proc = subprocess.Popen(
                [exe, "-F", "-c", str(conf)],
                stdin=subprocess.DEVNULL,
                stdout=output,
                stderr=subprocess.STDOUT,
            )
        wait_ready(proc)
        yield
    finally:
        if proc is not None and proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(STOP_TIMEOUT)
        shutil.rmtree(folder, ignore_errors=True)


@contextlib.contextmanager
def dovecot_imap(exe: str, maildir: Path) -> Iterator[Dovecot]:
    """Run ``exe`` (the dovecot binary) serving a copy of ``maildir`` as INBOX."""
    folder = Path(tempfile.mkdtemp(prefix="mailwright-dovecot-"))
    try:
        os.chmod(folder, 0o755)  # reachable for the mail user; the mail itself is 0700
        served = folder / "Maildir"
        shutil.copytree(maildir, served)
        (folder / "home").mkdir()
        owner = pwd.getpwnam(UNPRIVILEGED) if os.getuid() == 0 else None
        if owner is not None:
            for path in (served, folder / "home"):
                _chown_tree(path, owner.pw_uid, owner.pw_gid)
        port = free_port()
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)
        raise
    conf_text = config(folder, served, port, owner)
    with running(exe, folder, conf_text, lambda proc: _wait_for_port(proc, port, folder)):
        yield Dovecot(HOST, port, served, folder / "dovecot.log")
