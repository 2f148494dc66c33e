"""A private Postfix instance (Debian ``postfix``: its binaries only, the system
instance is never started) as a receiving MX for the relay's interop tests.

``postfix -c <dir> start`` with its own main.cf and master.cf in a temporary folder:
queue and data directories there too, smtpd on ``address:port`` only, no DNS
(``disable_dns_lookups``, ``smtp_dns_support_level = disabled``), no syslog
(``maillog_file`` in the folder, written by postlogd).  Mail for ``domain`` is
delivered by Postfix's virtual(8) agent into Maildirs under ``vmail/<domain>/<user>/``
for the users listed (owned by ``nobody``); any other recipient gets Postfix's own
``550 5.1.1`` at RCPT.  Postfix reports errors only to syslog unless it has a
terminal, so start and stop run under ``script`` (util-linux) to see them.
"""

from __future__ import annotations

import contextlib
import email
import email.message
import os
import pwd
import re
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from helpers.procs import wait_until
from helpers.relaykit import accepts
from helpers.tools import require_root, require_tool

START_TIMEOUT = 20.0  # s until smtpd's port accepts
COMMAND_TIMEOUT = 30.0  # s for "postfix start" / "stop"
MAIL_USER = "nobody"
# master.cf: every service chrooted ("y") in Debian's file runs unchrooted here.
_SERVICE = re.compile(r"^(\S+\s+(?:unix|inet|fifo|pass|unix-dgram)\s+\S+\s+\S+\s+)y")


@dataclass(frozen=True)
class PrivatePostfix:
    address: str
    port: int
    folder: Path
    domain: str

    def messages(self, user: str) -> list[email.message.Message]:
        new = self.folder / "vmail" / self.domain / user / "new"
        files = sorted(new.iterdir()) if new.is_dir() else []
        return [email.message_from_bytes(f.read_bytes()) for f in files]

    def log(self) -> str:
        path = self.folder / "maillog"
        return path.read_text("utf-8", "replace") if path.exists() else ""


def main_cf(folder: Path, domain: str, users: list[str]) -> str:
    owner = pwd.getpwnam(MAIL_USER)
    mailboxes = ", ".join(f"{u}@{domain}={domain}/{u}/" for u in users)
    return f"""compatibility_level = 3.6
queue_directory = {folder}/queue
data_directory = {folder}/data
command_directory = /usr/sbin
daemon_directory = /usr/lib/postfix/sbin
meta_directory = /etc/postfix
shlib_directory = no
mail_owner = postfix
setgid_group = postdrop
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
myhostname = mx.{domain}
mydomain = {domain}
myorigin = {domain}
mydestination =
mynetworks = 127.0.0.0/8
disable_dns_lookups = yes
smtp_dns_support_level = disabled
smtpd_peername_lookup = no
virtual_mailbox_domains = {domain}
virtual_mailbox_base = {folder}/vmail
virtual_mailbox_maps = inline:{{ {{{mailboxes}}} }}
virtual_uid_maps = static:{owner.pw_uid}
virtual_gid_maps = static:{owner.pw_gid}
maillog_file_prefixes = {folder}
maillog_file = {folder}/maillog
alias_maps =
alias_database =
smtpd_banner = $myhostname ESMTP private-postfix
"""


def master_cf(address: str, port: int) -> str:
    out = []
    for line in Path("/etc/postfix/master.cf").read_text().splitlines():
        if line.startswith("smtp ") and " smtpd" in line:
            line = f"{address}:{port} inet n - n - - smtpd"
        out.append(_SERVICE.sub(r"\1n", line))
    return "\n".join(out) + "\n"


def _postfix(conf: Path, command: str) -> str:
    script = require_tool("script", "bsdutils")
    postfix = require_tool("postfix", "postfix")
    done = subprocess.run(
        [script, "-qc", f"{postfix} -c {conf} {command}", "/dev/null"],
        capture_output=True,
        text=True,
        timeout=COMMAND_TIMEOUT,
        stdin=subprocess.DEVNULL,
    )
    return done.stdout + done.stderr


@contextlib.contextmanager
def private_postfix(
    address: str, port: int, domain: str, users: list[str]
) -> Iterator[PrivatePostfix]:
    require_root("a private Postfix instance (its daemons switch users)")
    folder = Path(tempfile.mkdtemp(prefix="mailwright-postfix-"))
    conf = folder / "conf"
    started = False
    try:
        os.chmod(folder, 0o755)
        for sub in ("conf", "queue", "data", "vmail"):
            (folder / sub).mkdir()
        postfix_user = pwd.getpwnam("postfix")
        os.chown(folder / "data", postfix_user.pw_uid, postfix_user.pw_gid)
        owner = pwd.getpwnam(MAIL_USER)
        os.chown(folder / "vmail", owner.pw_uid, owner.pw_gid)
        (conf / "main.cf").write_text(main_cf(folder, domain, users))
        (conf / "master.cf").write_text(master_cf(address, port))
        output = _postfix(conf, "start")
        started = True
        if not wait_until(lambda: accepts(address, port), START_TIMEOUT):
            raise AssertionError(f"private postfix did not start: {output}")
        yield PrivatePostfix(address, port, folder, domain)
    finally:
        if started:
            _postfix(conf, "stop")
            # The master exits after its children: wait (bounded) for the port to close.
            wait_until(lambda: not accepts(address, port), START_TIMEOUT)
        shutil.rmtree(folder, ignore_errors=True)
