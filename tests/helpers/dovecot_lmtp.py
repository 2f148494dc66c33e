"""A private Dovecot LMTP server (Debian ``dovecot-lmtpd``) for the relay's LMTP route.

Like ``helpers.dovecot`` (its IMAP sibling): Dovecot in the foreground with
everything in a private temporary folder, nothing read from ``/etc/dovecot``, on
127.0.0.1 at a free port; under root the mail is written as ``nobody``.  The users
it knows are listed in a passwd-file userdb; their mail goes to
``<folder>/mail/<domain>/<user>/`` (Maildir).  Any other recipient gets Dovecot's
own ``550 5.1.1`` at RCPT.
"""

from __future__ import annotations

import contextlib
import email
import email.message
import os
import pwd
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from helpers.dovecot import HOST, STOP_TIMEOUT, UNPRIVILEGED, _logs, _wait_for_port, free_port


@dataclass(frozen=True)
class DovecotLmtp:
    host: str
    port: int
    folder: Path

    def maildir(self, domain: str, user: str) -> Path:
        return self.folder / "mail" / domain / user

    def messages(self, domain: str, user: str) -> list[email.message.Message]:
        new = self.maildir(domain, user) / "new"
        files = sorted(new.iterdir()) if new.is_dir() else []
        return [email.message_from_bytes(f.read_bytes()) for f in files]

    def log(self) -> str:
        return _logs(self.folder)


def config(folder: Path, port: int, owner: pwd.struct_passwd | None) -> str:
    if owner is not None:
        identity = f"mail_uid = {owner.pw_uid}\nmail_gid = {owner.pw_gid}\n"
    else:
        me = pwd.getpwuid(os.getuid()).pw_name
        identity = (
            f"default_login_user = {me}\ndefault_internal_user = {me}\n"
            "service anvil {\n  chroot =\n}\n"
        )
    return (
        f"base_dir = {folder / 'run'}\n"
        f"state_dir = {folder / 'state'}\n"
        f"log_path = {folder / 'dovecot.log'}\n"
        "protocols = lmtp\n"
        f"listen = {HOST}\n"
        "ssl = no\n"
        "first_valid_uid = 1\n" + identity + f"mail_location = maildir:{folder / 'mail'}/%d/%n\n"
        "passdb {\n  driver = static\n  args = nopassword=y\n}\n"
        f"userdb {{\n  driver = passwd-file\n  args = {folder / 'users'}\n"
        f"  default_fields = home={folder / 'home'}/%d/%n\n}}\n"
        "service lmtp {\n"
        f"  inet_listener lmtp {{\n    address = {HOST}\n    port = {port}\n  }}\n"
        "}\n"
    )


@contextlib.contextmanager
def dovecot_lmtp(exe: str, users: list[str]) -> Iterator[DovecotLmtp]:
    """Run ``exe`` (the dovecot binary) as an LMTP server knowing ``users``
    (full addresses)."""
    folder = Path(tempfile.mkdtemp(prefix="mailwright-lmtp-"))
    proc: subprocess.Popen[bytes] | None = None
    try:
        os.chmod(folder, 0o755)
        for sub in ("mail", "home"):
            (folder / sub).mkdir()
        owner = pwd.getpwnam(UNPRIVILEGED) if os.getuid() == 0 else None
        if owner is not None:
            for sub in ("mail", "home"):
                os.chown(folder / sub, owner.pw_uid, owner.pw_gid)
        (folder / "users").write_text("".join(f"{user}::::::\n" for user in users))
        port = free_port()
        conf = folder / "dovecot.conf"
        conf.write_text(config(folder, port, owner))
        with open(folder / "output", "wb") as output:
            proc = subprocess.Popen(
                [exe, "-F", "-c", str(conf)],
                stdin=subprocess.DEVNULL,
                stdout=output,
                stderr=subprocess.STDOUT,
            )
        _wait_for_port(proc, port, folder)
        yield DovecotLmtp(HOST, port, folder)
    finally:
        if proc is not None and proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(STOP_TIMEOUT)
        shutil.rmtree(folder, ignore_errors=True)
