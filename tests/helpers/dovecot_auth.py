"""A private Dovecot that runs only its auth service, as the SASL backend of the test
client's private Postfix (``helpers/postfix.py`` with ``sasl_users``,
``smtpd_sasl_type = dovecot``).

As ``helpers.dovecot`` does for IMAP: ``dovecot -F -c <conf>`` in the foreground with a
private configuration, base and state folders and log in a ``tempfile`` folder (0755:
Postfix's smtpd runs as the postfix user and must reach the socket).  No protocol is
served; the auth service listens on one unix socket, ``auth-client``, mode 0666.  The
users come from a ``passwd-file`` with ``{PLAIN}`` passwords: CRAM-MD5 and SCRAM need
the clear password (or a scheme derived for them), which PLAIN storage gives all four
mechanisms.  Every wait is bounded; SIGTERM, then SIGKILL, at exit.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

from helpers.dovecot import START_TIMEOUT, logs, private_folders, running
from helpers.tools import require_tool

# What the private Postfix offers after STARTTLS, in this order (Dovecot's own order).
MECHANISMS = ("plain", "login", "cram-md5", "scram-sha-256")
# Dovecot's auth-client handshake ends with this line (Dovecot auth protocol 1.2).
HANDSHAKE_END = b"\nDONE\n"


@dataclass(frozen=True)
class DovecotAuth:
    socket: Path  # the auth-client listener, for Postfix's smtpd_sasl_path
    log: Path


def _passwd_file(users: Mapping[str, str]) -> str:
    for user, password in users.items():
        if any(c in user + password for c in ":\n"):
            raise ValueError(f"user {user!r}: ':' and newlines cannot go in a passwd-file")
    return "".join(f"{user}:{{PLAIN}}{password}::::::\n" for user, password in users.items())


def _config(folder: Path, sock: Path) -> str:
    return (
        private_folders(folder, "none")
        # Postfix's smtpd_tls_auth_only keeps AUTH behind STARTTLS; Dovecot need not
        # judge the Postfix-to-Dovecot hop (a unix socket) a second time.
        + "disable_plaintext_auth = no\n"
        f"auth_mechanisms = {' '.join(MECHANISMS)}\n"
        "passdb {\n  driver = passwd-file\n"
        f"  args = scheme=PLAIN {folder / 'users'}\n}}\n"
        "userdb {\n  driver = static\n  args = uid=nobody gid=nogroup home=/nonexistent\n}\n"
        "service auth {\n"
        f"  unix_listener {sock} {{\n    mode = 0666\n  }}\n"
        "}\n"
    )


@contextlib.contextmanager
def dovecot_auth(users: Mapping[str, str]) -> Iterator[DovecotAuth]:
    """Start a Dovecot auth server knowing ``users`` (name to password)."""
    exe = require_tool("dovecot", "dovecot-core")
    folder = Path(tempfile.mkdtemp(prefix="mailwright-dovecot-auth-"))
    try:
        os.chmod(folder, 0o755)
        (folder / "users").write_text(_passwd_file(users))
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)
        raise
    sock = folder / "auth-client"
    conf_text = _config(folder, sock)
    with running(exe, folder, conf_text, lambda proc: _wait_for_handshake(proc, sock, folder)):
        yield DovecotAuth(sock, folder / "dovecot.log")


def _wait_for_handshake(proc: subprocess.Popen[bytes], path: Path, folder: Path) -> None:
    """Until the socket answers with the whole handshake, which lists every mechanism
    (a mechanism this Dovecot lacks fails here, naming it, not later in a transcript)."""
    deadline = time.monotonic() + START_TIMEOUT
    while True:
        if proc.poll() is not None:
            raise AssertionError(f"dovecot exited ({proc.returncode}): {logs(folder)}")
        got = b""
        with socket.socket(socket.AF_UNIX) as sock:
            sock.settimeout(2.0)
            with contextlib.suppress(OSError):
                sock.connect(str(path))
                sock.sendall(b"VERSION\t1\t2\nCPID\t%d\n" % os.getpid())
                while HANDSHAKE_END not in got and (chunk := sock.recv(4096)):
                    got += chunk
        if HANDSHAKE_END in got:
            offered = {
                line.split(b"\t")[1].decode().lower()
                for line in got.splitlines()
                if line.startswith(b"MECH\t")
            }
            lacking = [m for m in MECHANISMS if m not in offered]
            assert not lacking, f"dovecot auth does not offer {lacking}: {got!r}"
            return
        if time.monotonic() >= deadline:
            raise AssertionError(f"dovecot auth not ready after {START_TIMEOUT} s: {logs(folder)}")
        time.sleep(0.05)
