"""A private Postfix instance (Debian ``postfix``: its binaries and its master.cf as a
template; the system instance is never touched or started), the real peer of the
relay's interop tests (a receiving MX) and of the test client's (``mailwright send``
against STARTTLS, implicit TLS and AUTH).

``postfix -c <dir>/conf start`` with its own main.cf and master.cf in a ``tempfile``
folder (0755, not under pytest's 0700 ``tmp_path``: Postfix's daemons run as the
``postfix`` user and must reach the queue, data and mail folders).  Queue and data
directories are there too; smtpd listens on ``address:port`` only (a free port when
none is given); no DNS (``disable_dns_lookups``, ``smtp_dns_support_level =
disabled``); no syslog (``maillog_file`` in the folder, written by postlogd); nothing
chrooted (the private queue has no chroot files); not an open relay even for loopback
clients (``reject_unauth_destination``: "554 5.7.1 Relay access denied").

Mail for ``domain`` is delivered by Postfix's virtual(8) agent, as ``nobody``, into
Maildirs under ``vmail/<domain>/``: with ``users``, one Maildir per listed user
(``vmail/<domain>/<user>/``) and Postfix's own ``550 5.1.1`` at RCPT for anyone else;
without, every recipient of ``domain`` lands in one catch-all Maildir (``static:``
map, ``vmail/<domain>/sink/``), so a test can read any message back.

``tls=True`` gives smtpd STARTTLS (``smtpd_tls_security_level = may``) with a trustme
certificate for the host name (the CA in ``ca_pem``) and a second smtpd with implicit
TLS on ``tls_port`` (``smtpd_tls_wrappermode``, RFC 8314).  ``sasl_users`` (name to
password, needs ``tls``) makes smtpd offer AUTH after STARTTLS only
(``smtpd_tls_auth_only``), its SASL backend a private Dovecot auth server
(``helpers/dovecot_auth.py``) on a unix socket named by absolute path
(``smtpd_sasl_path``).

Start-up errors: Postfix writes the ``postfix`` command's own complaints (a bad
main.cf value) only to syslog unless it has a terminal, so start and stop run under
``script`` (util-linux); the master's (a port already bound) go to the maillog.  A
failed start shows both.  Stop is bounded: ``postfix stop``, then until the ports
are closed and the master is gone.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

from helpers.dovecot_auth import dovecot_auth
from helpers.procs import wait_until
from helpers.relaykit import accepts, free_shared_port
from helpers.tools import missing, require_root, require_tool

MASTER_CF = Path("/etc/postfix/master.cf")  # Debian's, the template of ours
START_TIMEOUT = 20.0  # s until smtpd greets
STOP_TIMEOUT = 20.0  # s until the master is gone and the ports are closed
COMMAND_TIMEOUT = 60.0  # s for "postfix start" / "stop"
DELIVERY_TIMEOUT = 15.0  # s from smtpd's 250 to the file in the Maildir
MAIL_USER = "nobody"  # the virtual agent's uid and gid (virtual_uid_maps)
CATCH_ALL = "sink"  # the one Maildir of every recipient when no users are named
LOG_TAIL = 2000  # characters of the maillog shown on a failed start


@dataclass(frozen=True)
class PrivatePostfix:
    address: str
    port: int
    folder: Path
    domain: str
    tls_port: int | None  # implicit TLS (RFC 8314), when started with tls
    ca_pem: Path | None  # the CA of smtpd's certificate, when started with tls

    def maildir(self, user: str = CATCH_ALL) -> Path:
        """The ``new/`` folder of ``user``'s Maildir (the catch-all one by default)."""
        return self.folder / "vmail" / self.domain / user / "new"

    def messages(
        self, user: str = CATCH_ALL, count: int = 1, timeout: float = DELIVERY_TIMEOUT
    ) -> list[bytes]:
        """``user``'s delivered messages, oldest first, once there are ``count`` or
        ``timeout`` has passed (delivery follows smtpd's 250 through the queue)."""
        new = self.maildir(user)
        wait_until(lambda: new.is_dir() and len(list(new.iterdir())) >= count, timeout)
        files = sorted(new.iterdir()) if new.is_dir() else []
        return [f.read_bytes() for f in files]

    def message_with(
        self, marker: bytes, user: str = CATCH_ALL, timeout: float = DELIVERY_TIMEOUT
    ) -> bytes:
        """The one message of ``user`` containing ``marker``, waiting (bounded) for it."""
        new = self.maildir(user)
        found: list[bytes] = []

        def look() -> bool:
            files = sorted(new.iterdir()) if new.is_dir() else []
            found[:] = [m for f in files if marker in (m := f.read_bytes())]
            return bool(found)

        wait_until(look, timeout)
        assert len(found) == 1, f"{len(found)} messages with {marker!r}"
        return found[0]

    def log(self) -> str:
        return _maillog(self.folder)


def require_postfix() -> None:
    """Postfix's binaries, Debian's master.cf (our template), ``script`` (to see start
    errors) and root (the master switches its daemons to the postfix user).  Missing,
    the test is skipped with a reason; under ``.ci/run`` (``MAILWRIGHT_REQUIRE_INTEROP``)
    it fails instead (``helpers.tools``)."""
    require_tool("postfix", "postfix")
    if not MASTER_CF.is_file():
        missing(f"Postfix is not installed ({MASTER_CF} is missing)", ("postfix",))
    require_tool("script", "bsdutils")
    require_root("a private Postfix instance (its daemons switch users)")


def main_cf(
    folder: Path,
    *,
    domain: str,
    hostname: str,
    users: list[str] | None,
    tls: bool,
    sasl_socket: Path | None,
) -> str:
    owner = pwd.getpwnam(MAIL_USER)
    if users is None:
        mailboxes = f"static:{domain}/{CATCH_ALL}/"
    else:
        entries = ", ".join(f"{u}@{domain}={domain}/{u}/" for u in users)
        mailboxes = f"inline:{{ {{{entries}}} }}"
    text = f"""compatibility_level = 3.6
queue_directory = {folder}/queue
data_directory = {folder}/data
command_directory = /usr/sbin
daemon_directory = /usr/lib/postfix/sbin
meta_directory = /etc/postfix
shlib_directory = no
mail_owner = postfix
setgid_group = postdrop
# Postfix wants an address of a local interface here (not 127.0.0.13); the smtpd
# services name their own address in master.cf.
inet_interfaces = loopback-only
inet_protocols = ipv4
myhostname = {hostname}
mydomain = {domain}
myorigin = {domain}
mydestination =
mynetworks = 127.0.0.0/8
disable_dns_lookups = yes
smtp_dns_support_level = disabled
smtpd_peername_lookup = no
smtputf8_enable = yes
# Not an open relay even for loopback clients: a recipient elsewhere is refused.
smtpd_relay_restrictions = reject_unauth_destination
virtual_mailbox_domains = {domain}
virtual_mailbox_base = {folder}/vmail
virtual_mailbox_maps = {mailboxes}
virtual_uid_maps = static:{owner.pw_uid}
virtual_gid_maps = static:{owner.pw_gid}
maillog_file_prefixes = {folder}
maillog_file = {folder}/maillog
alias_maps =
alias_database =
"""
    if tls:
        text += f"""smtpd_tls_chain_files = {folder}/server.pem
smtpd_tls_security_level = may
"""
    if sasl_socket is not None:
        text += f"""smtpd_sasl_auth_enable = yes
smtpd_sasl_type = dovecot
smtpd_sasl_path = {sasl_socket}
smtpd_tls_auth_only = yes
"""
    return text


def master_cf(address: str, port: int, tls_port: int | None) -> str:
    """Debian's master.cf with smtpd moved to ``address:port``, every other inet
    service (none is active in Debian's file) dropped with its ``-o`` lines, nothing
    chrooted, and with ``tls_port`` a second smtpd with implicit TLS."""
    out: list[str] = []
    dropping = False
    for line in MASTER_CF.read_text().splitlines():
        if line[:1].isspace() and line.strip() and not line.lstrip().startswith("#"):
            if not dropping:  # a continuation ("-o ...") of the service above
                out.append(line)
            continue
        dropping = False
        fields = line.split()
        if line.startswith("#") or len(fields) < 8:
            out.append(line)
            continue
        if fields[1] == "inet":
            if fields[0] != "smtp":
                dropping = True
                continue
            fields[0] = f"{address}:{port}"
        fields[4] = "n"  # chroot: the private queue has no chroot files
        out.append(" ".join(fields))
    if tls_port is not None:
        out.append(f"{address}:{tls_port} inet n - n - - smtpd -o smtpd_tls_wrappermode=yes")
    return "\n".join(out) + "\n"


def _maillog(folder: Path) -> str:
    path = folder / "maillog"
    return path.read_text("utf-8", "replace") if path.exists() else ""


def _postfix(conf: Path, command: str) -> subprocess.CompletedProcess[str]:
    """``postfix -c conf command`` under ``script`` (with a terminal Postfix prints
    its errors; without one it sends them to syslog only); ``-e``: its exit status."""
    script = require_tool("script", "bsdutils")
    postfix = require_tool("postfix", "postfix")
    return subprocess.run(
        [script, "-qec", f"{postfix} -c {conf} {command}", "/dev/null"],
        capture_output=True,
        text=True,
        timeout=COMMAND_TIMEOUT,
        stdin=subprocess.DEVNULL,
    )


def _greets(address: str, port: int) -> bool:
    """Whether smtpd on ``address:port`` answers with its 220 greeting (then QUIT)."""
    with contextlib.suppress(OSError), socket.create_connection((address, port), 2) as s:
        s.settimeout(5)
        if s.recv(200).startswith(b"220"):
            s.sendall(b"QUIT\r\n")
            return True
    return False


def _master_pid(folder: Path) -> int | None:
    with contextlib.suppress(OSError, ValueError):
        return int((folder / "queue" / "pid" / "master.pid").read_text().split()[0])
    return None


def _alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie nobody reaped yet counts as gone)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def _start_failed(what: str, folder: Path, output: str) -> AssertionError:
    return AssertionError(
        f"private postfix {what}\n--- postfix start said:\n{output.strip()}"
        f"\n--- maillog:\n{_maillog(folder)[-LOG_TAIL:]}"
    )


def _free_port(address: str, taken: int | None = None) -> int:
    while (port := free_shared_port([address])) == taken:
        pass
    return port


@contextlib.contextmanager
def private_postfix(
    *,
    address: str = "127.0.0.1",
    port: int | None = None,
    domain: str,
    hostname: str | None = None,
    users: list[str] | None = None,
    tls: bool = False,
    sasl_users: Mapping[str, str] | None = None,
) -> Iterator[PrivatePostfix]:
    """Start a private Postfix on ``address:port`` (a free port if None) receiving mail
    for ``domain`` as ``hostname`` (default: the domain; also the certificate's name);
    ``users``: their Maildirs only, None: one catch-all Maildir; ``tls``: STARTTLS and
    an implicit-TLS port; ``sasl_users`` (name to password): AUTH after STARTTLS."""
    require_postfix()
    if sasl_users is None:
        with _instance(address, port, domain, hostname, users, tls, None) as instance:
            yield instance
        return
    if not tls:
        raise ValueError("sasl_users needs tls: smtpd offers AUTH only after STARTTLS")
    with (
        dovecot_auth(sasl_users) as auth,
        _instance(address, port, domain, hostname, users, tls, auth.socket) as instance,
    ):
        yield instance


@contextlib.contextmanager
def _instance(
    address: str,
    port: int | None,
    domain: str,
    hostname: str | None,
    users: list[str] | None,
    tls: bool,
    sasl_socket: Path | None,
) -> Iterator[PrivatePostfix]:
    hostname = hostname or domain
    folder = Path(tempfile.mkdtemp(prefix="mailwright-postfix-"))
    conf = folder / "conf"
    try:
        os.chmod(folder, 0o755)
        for sub in ("conf", "queue", "data", "vmail"):
            (folder / sub).mkdir()
        postfix_user = pwd.getpwnam("postfix")
        os.chown(folder / "data", postfix_user.pw_uid, postfix_user.pw_gid)
        owner = pwd.getpwnam(MAIL_USER)
        os.chown(folder / "vmail", owner.pw_uid, owner.pw_gid)
        ca_pem = None
        if tls:
            import trustme

            ca = trustme.CA()
            chain = ca.issue_cert(hostname).private_key_and_cert_chain_pem
            chain.write_to_path(str(folder / "server.pem"))
            ca_pem = folder / "ca.pem"
            ca.cert_pem.write_to_path(str(ca_pem))
        listen = port or _free_port(address)
        tls_port = _free_port(address, listen) if tls else None
        (conf / "main.cf").write_text(
            main_cf(
                folder,
                domain=domain,
                hostname=hostname,
                users=users,
                tls=tls,
                sasl_socket=sasl_socket,
            )
        )
        (conf / "master.cf").write_text(master_cf(address, listen, tls_port))
        instance = PrivatePostfix(address, listen, folder, domain, tls_port, ca_pem)
        started = _postfix(conf, "start")
        output = started.stdout + started.stderr
        try:
            # With -w (Postfix >= 3.3) "postfix start" fails when the master could
            # not bind its ports; an smtpd that cannot start shows at the greeting.
            if started.returncode != 0:
                raise _start_failed(f"start failed ({started.returncode})", folder, output)
            if not wait_until(lambda: _greets(address, listen), START_TIMEOUT):
                raise _start_failed(f"did not greet in {START_TIMEOUT} s", folder, output)
            yield instance
        finally:
            _stop(instance, conf)
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _stop(instance: PrivatePostfix, conf: Path) -> None:
    """``postfix stop`` (it escalates to SIGKILL itself after 5 s), then (bounded) until
    the master is gone and the ports are closed.  A master still there is killed by
    its pid and reported: the next test must not meet it."""
    pid = _master_pid(instance.folder)
    if pid is None or not _alive(pid):
        return
    ports = [p for p in (instance.port, instance.tls_port) if p is not None]

    def stopped() -> bool:
        return not _alive(pid) and not any(accepts(instance.address, p) for p in ports)

    said = _postfix(conf, "stop")
    if wait_until(stopped, STOP_TIMEOUT):
        return
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)
    raise AssertionError(
        f"private postfix (master {pid}) not stopped {STOP_TIMEOUT} s after "
        f"postfix stop: {said.stdout}{said.stderr}"
    )
