"""A private Postfix with STARTTLS and implicit TLS, for the test client's interop
tests (``helpers/postfix.py`` is the relay's plain receiving MX).

``postfix -c <dir>`` with its own main.cf and master.cf, smtpd on a loopback port, no
DNS (``disable_dns_lookups``), STARTTLS with a trustme certificate for
``pf.example.test``, and every recipient of ``pf.example.test`` delivered by the
virtual agent into one Maildir (``static:`` map), so a test can read the message back.
With ``sasl_users``, smtpd offers AUTH after STARTTLS (``smtpd_tls_auth_only``), its
SASL backend a private Dovecot auth server (``helpers/dovecot_auth.py``) on a unix
socket named by absolute path (``smtpd_sasl_path``; nothing here is chrooted).
The system instance is never touched; ``stop`` runs ``postfix -c <dir> stop`` and
waits (bounded) for the master to exit."""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

from helpers.dovecot_auth import dovecot_auth
from helpers.outbound import free_port
from helpers.tools import missing, require_root

POSTFIX = "/usr/sbin/postfix"
MASTER_CF = Path("/etc/postfix/master.cf")
DOMAIN = "pf.example.test"
START_TIMEOUT = 20.0
STOP_TIMEOUT = 20.0
DELIVERY_TIMEOUT = 15.0


@dataclass
class PrivatePostfix:
    directory: Path
    port: int
    tls_port: int  # implicit TLS
    ca_pem: Path

    @property
    def maildir(self) -> Path:
        return self.directory / "mail" / DOMAIN / "sink" / "new"

    def messages(self, count: int = 1, timeout: float = DELIVERY_TIMEOUT) -> list[bytes]:
        """The delivered messages, waiting (bounded) until there are ``count``."""
        deadline = time.monotonic() + timeout
        while True:
            files = sorted(self.maildir.iterdir()) if self.maildir.is_dir() else []
            if len(files) >= count or time.monotonic() >= deadline:
                return [f.read_bytes() for f in files]
            time.sleep(0.05)

    def message_with(self, marker: bytes, timeout: float = DELIVERY_TIMEOUT) -> bytes:
        deadline = time.monotonic() + timeout
        while True:
            files = sorted(self.maildir.iterdir()) if self.maildir.is_dir() else []
            found = [m for f in files if marker in (m := f.read_bytes())]
            if found or time.monotonic() >= deadline:
                assert len(found) == 1, f"{len(found)} messages with {marker!r}"
                return found[0]
            time.sleep(0.05)


def _master_cf(port: int, tls_port: int) -> str:
    """Debian's master.cf, smtpd moved to our port plus one with implicit TLS
    (``smtpd_tls_wrappermode``, RFC 8314), nothing chrooted (the private queue has no
    chroot files)."""
    out = []
    for line in MASTER_CF.read_text().splitlines():
        fields = line.split()
        if line and not line[0].isspace() and not line.startswith("#") and len(fields) >= 8:
            if fields[0] in ("smtp", "submission", "smtps") and fields[1] == "inet":
                if fields[0] != "smtp":
                    continue
                fields[0] = f"127.0.0.1:{port}"
            fields[4] = "n"
            line = " ".join(fields)
        out.append(line)
    out.append(f"127.0.0.1:{tls_port} inet n - n - - smtpd -o smtpd_tls_wrappermode=yes")
    return "\n".join(out) + "\n"


def _wait_banner(port: int) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 2) as s:
            s.settimeout(5)
            if s.recv(200).startswith(b"220"):
                s.sendall(b"QUIT\r\n")
                return
        time.sleep(0.1)
    raise AssertionError("private Postfix did not greet in time")


def _sasl_cf(socket_path: Path) -> str:
    return f"""\
smtpd_sasl_auth_enable = yes
smtpd_sasl_type = dovecot
smtpd_sasl_path = {socket_path}
smtpd_tls_auth_only = yes
"""


def _require_postfix() -> None:
    """Postfix's binaries and Debian's master.cf (the template), and root: the private
    master drops privileges.  Missing under ``.ci/run`` is a failure (``tools``)."""
    if not (os.path.exists(POSTFIX) and MASTER_CF.exists()):
        missing("Postfix is not installed", ("postfix",))
    require_root("a private Postfix instance (its master drops privileges)")


@contextlib.contextmanager
def private_postfix(sasl_users: Mapping[str, str] | None = None) -> Iterator[PrivatePostfix]:
    """Start the private Postfix; ``sasl_users`` (name to password) turns on AUTH."""
    if sasl_users is None:
        with _private_postfix("") as instance:
            yield instance
        return
    _require_postfix()
    with dovecot_auth(sasl_users) as auth, _private_postfix(_sasl_cf(auth.socket)) as instance:
        yield instance


@contextlib.contextmanager
def _private_postfix(extra_cf: str) -> Iterator[PrivatePostfix]:
    _require_postfix()
    import trustme

    # Not under tmp_path: pytest's folders are 0700 and Postfix's daemons, running as
    # the postfix user, must reach the queue, data and mail folders.
    directory = Path(tempfile.mkdtemp(prefix="mw-postfix-"))
    directory.chmod(0o755)
    for sub in ("mail", "queue", "data"):
        (directory / sub).mkdir()
    ca = trustme.CA()
    cert = ca.issue_cert(DOMAIN)
    cert.private_key_and_cert_chain_pem.write_to_path(str(directory / "server.pem"))
    ca.cert_pem.write_to_path(str(directory / "ca.pem"))
    port = free_port()
    pw = subprocess.run(["id", "-u", "postfix"], capture_output=True, text=True, check=True)
    gid = subprocess.run(["id", "-g", "postfix"], capture_output=True, text=True, check=True)
    uid, group = pw.stdout.strip(), gid.stdout.strip()
    shutil.chown(directory / "mail", int(uid), int(group))
    shutil.chown(directory / "data", int(uid), int(group))
    main_cf = f"""\
compatibility_level = 3.6
queue_directory = {directory}/queue
data_directory = {directory}/data
mail_owner = postfix
myhostname = {DOMAIN}
mydestination =
inet_interfaces = loopback-only
inet_protocols = ipv4
disable_dns_lookups = yes
smtp_dns_support_level = disabled
mynetworks = 127.0.0.0/8
smtputf8_enable = yes
maillog_file = {directory}/maillog
maillog_file_prefixes = {directory}
smtpd_tls_chain_files = {directory}/server.pem
smtpd_tls_security_level = may
virtual_mailbox_domains = {DOMAIN}
virtual_mailbox_base = {directory}/mail
virtual_mailbox_maps = static:{DOMAIN}/sink/
virtual_uid_maps = static:{uid}
virtual_gid_maps = static:{group}
# Not an open relay even for loopback clients: a recipient elsewhere is refused.
smtpd_relay_restrictions = reject_unauth_destination
"""
    main_cf += extra_cf
    (directory / "main.cf").write_text(main_cf)
    tls_port = free_port()
    (directory / "master.cf").write_text(_master_cf(port, tls_port))
    env = {**os.environ, "MAIL_CONFIG": str(directory)}
    started = subprocess.run(
        [POSTFIX, "-c", str(directory), "start"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    if started.returncode != 0:
        log = (directory / "maillog").read_text() if (directory / "maillog").exists() else ""
        shutil.rmtree(directory, ignore_errors=True)
        raise AssertionError(f"postfix start failed: {log[-2000:]}")
    try:
        _wait_banner(port)
        yield PrivatePostfix(directory, port, tls_port, directory / "ca.pem")
    finally:
        subprocess.run(
            [POSTFIX, "-c", str(directory), "stop"], capture_output=True, env=env, timeout=60
        )
        _wait_stopped(directory)
        shutil.rmtree(directory, ignore_errors=True)


def _wait_stopped(directory: Path) -> None:
    """Until the master named in its pid file is gone (bounded)."""
    pid_file = directory / "queue" / "pid" / "master.pid"
    deadline = time.monotonic() + STOP_TIMEOUT
    while pid_file.exists() and time.monotonic() < deadline:
        text = pid_file.read_text().strip()
        if not re.fullmatch(r"\d+", text) or not Path(f"/proc/{text}").exists():
            return
        time.sleep(0.1)
