"""A private Dovecot LMTP server (``dovecot-lmtpd``) on a unix socket, for the outbound
LMTP tests: every user exists (static userdb), each gets ``mail/<user>/`` as Maildir.

As ``helpers.dovecot`` does for IMAP: Dovecot runs in the foreground with a private
configuration, base and state folders and log, in a ``tempfile`` folder reachable by
``nobody`` (the mail user under root; Dovecot refuses to deliver as root).  Every
wait is bounded; SIGTERM, then SIGKILL, at exit.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from helpers.dovecot import START_TIMEOUT, UNPRIVILEGED, identity, logs, private_folders, running
from helpers.tools import require_tool

LMTP_BINARY = Path("/usr/lib/dovecot/lmtp")


@dataclass(frozen=True)
class DovecotLmtp:
    socket: Path
    mail: Path  # mail/<user>/ is each user's Maildir
    log: Path

    def maildir_messages(self, user: str, count: int = 1, timeout: float = 5.0) -> list[bytes]:
        new = self.mail / user / "new"
        deadline = time.monotonic() + timeout
        while True:
            files = sorted(new.iterdir()) if new.is_dir() else []
            if len(files) >= count or time.monotonic() >= deadline:
                return [f.read_bytes() for f in files]
            time.sleep(0.02)


def _config(folder: Path, sock: Path, owner: pwd.struct_passwd | None) -> str:
    return (
        private_folders(folder, "lmtp")
        + "first_valid_uid = 1\n"
        + identity(owner)
        + f"mail_location = maildir:{folder / 'mail'}/%n\n"
        "passdb {\n  driver = static\n  args = nopassword=y\n}\n"
        "userdb {\n  driver = static\n"
        f"  args = home={folder / 'home'}/%n allow_all_users=yes\n}}\n"
        "service lmtp {\n"
        f"  unix_listener {sock} {{\n    mode = 0666\n  }}\n"
        "}\n"
    )


@contextlib.contextmanager
def dovecot_lmtp(prepare_mail: tuple[str, ...] = ()) -> Iterator[DovecotLmtp]:
    """Start Dovecot LMTP; ``prepare_mail`` names users whose Maildir path is made a
    plain file, so delivery to them fails (a per-recipient failure after the data)."""
    exe = require_tool("dovecot", "dovecot-core")
    if not LMTP_BINARY.exists():
        require_tool("dovecot-lmtp-missing", "dovecot-lmtpd")
    folder = Path(tempfile.mkdtemp(prefix="mailwright-lmtp-"))
    try:
        os.chmod(folder, 0o755)
        owner = pwd.getpwnam(UNPRIVILEGED) if os.getuid() == 0 else None
        for sub in ("mail", "home"):
            (folder / sub).mkdir()
            if owner is not None:
                os.chown(folder / sub, owner.pw_uid, owner.pw_gid)
        for user in prepare_mail:
            (folder / "mail" / user).write_bytes(b"not a maildir")
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)
        raise
    sock = folder / "lmtp.sock"
    conf_text = _config(folder, sock, owner)
    with running(exe, folder, conf_text, lambda proc: _wait_for_socket(proc, sock, folder)):
        yield DovecotLmtp(sock, folder / "mail", folder / "dovecot.log")


def _wait_for_socket(proc: subprocess.Popen[bytes], path: Path, folder: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while True:
        if proc.poll() is not None:
            raise AssertionError(f"dovecot exited ({proc.returncode}): {logs(folder)}")
        with socket.socket(socket.AF_UNIX) as sock:
            sock.settimeout(2.0)
            try:
                sock.connect(str(path))
                if sock.recv(100).startswith(b"220"):
                    sock.sendall(b"QUIT\r\n")
                    return
            except OSError:
                pass
        if time.monotonic() >= deadline:
            raise AssertionError(f"dovecot LMTP not ready after {START_TIMEOUT} s: {logs(folder)}")
        time.sleep(0.05)
