"""The relay benchmark's processes: Postfix ``smtp-sink`` (the destination, counting
what it receives), a private Postfix relaying to it, mailwright relaying to it, and
CPU/RSS of a whole process tree from /proc.

The sink runs with ``-c``: it writes ``sess=N quit=N mesg=N`` followed by a carriage
return to its stdout whenever a session ends, a QUIT arrives or a message's final "."
is acknowledged — an exact count of delivered messages for the cost of reading the
file's last bytes.  ``-D`` (dump every message) would cost the sink a write per message
and the reader a scan of megabytes.

The private Postfix is ``postfix -c DIR start`` with its own main.cf/master.cf (as
tests/helpers/postfix.py runs one): smtpd on 127.0.0.1:PORT only, no DNS, no chroot,
``relayhost = [127.0.0.1]:SINKPORT``, every other concurrency and process limit at
Postfix's defaults.  It needs root (its daemons switch to the ``postfix`` user).
"""

from __future__ import annotations

import contextlib
import os
import pwd
import re
import shutil
import socket
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from _servers import HOST, ServerError, ServerProcess, start_mailwright

SINK_START_TIMEOUT = 10.0  # s until smtp-sink greets
POSTFIX_START_TIMEOUT = 30.0  # s until Postfix's smtpd greets
POSTFIX_COMMAND_TIMEOUT = 60.0  # s for "postfix start" / "stop"
SINK_USER = "nobody"  # smtp-sink must drop privileges (-u) when started as root
# smtp-sink's -m: simultaneous connections it serves (its default is 256); above both
# servers' outbound concurrency so the sink never queues a connection.
SINK_MAX_CONNECTIONS = 512
_COUNTERS = re.compile(rb"sess=(\d+) quit=(\d+) mesg=(\d+)")
_CLK_TCK = os.sysconf("SC_CLK_TCK")
# master.cf: every service Debian's file chroots ("y") runs unchrooted here.
_CHROOTED = re.compile(r"^(\S+\s+(?:unix|inet|fifo|pass|unix-dgram)\s+\S+\s+\S+\s+)y")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def greets(port: int) -> bool:
    """Whether something on ``port`` answers with a 220 greeting."""
    try:
        with socket.create_connection((HOST, port), timeout=2) as sock:
            ok = sock.recv(512).startswith(b"220")
            with contextlib.suppress(OSError):
                sock.sendall(b"QUIT\r\n")
            return ok
    except OSError:
        return False


def _wait(check: Callable[[], bool], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.05)
    return False


# -- the sink ---------------------------------------------------------------------------


@dataclass
class Sink:
    proc: subprocess.Popen[bytes]
    port: int
    counters: Path

    def delivered(self) -> int:
        """Messages the sink has acknowledged so far (its last ``mesg=`` counter)."""
        try:
            with open(self.counters, "rb") as f:
                f.seek(0, os.SEEK_END)
                f.seek(max(0, f.tell() - 256))
                tail = f.read()
        except FileNotFoundError:
            return 0
        found = _COUNTERS.findall(tail)
        return int(found[-1][2]) if found else 0

    def last_change(self) -> float:
        """When the counters last changed (time.time() clock)."""
        try:
            return self.counters.stat().st_mtime
        except FileNotFoundError:
            return 0.0

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(timeout=10)


def start_sink(workdir: Path) -> Sink:
    exe = shutil.which("smtp-sink") or "/usr/sbin/smtp-sink"
    workdir.mkdir(parents=True, exist_ok=True)
    counters = workdir / "sink-counters.txt"
    port = free_port()
    user = ["-u", SINK_USER] if os.geteuid() == 0 else []
    with open(counters, "wb") as out:
        proc = subprocess.Popen(
            [
                exe,
                *user,
                "-c",
                "-h",
                "sink.bench.test",
                "-m",
                str(SINK_MAX_CONNECTIONS),
                f"{HOST}:{port}",
                "1024",
            ],
            stdout=out,
            stderr=subprocess.DEVNULL,
            stdin=subprocess.DEVNULL,
        )
    sink = Sink(proc, port, counters)
    if not _wait(lambda: greets(port), SINK_START_TIMEOUT):
        sink.stop()
        raise ServerError("smtp-sink did not greet in time")
    # The greeting check was a session: it is counted in sess=, never in mesg=.
    return sink


# -- process trees ----------------------------------------------------------------------


def _stat(pid: int) -> list[str] | None:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None


def tree(root: int) -> list[int]:
    """``root`` and all its live descendants."""
    parent: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            fields = _stat(int(entry.name))
            if fields is not None:
                parent[int(entry.name)] = int(fields[1])
    found, frontier = [root], [root]
    while frontier:
        frontier = [pid for pid, ppid in parent.items() if ppid in frontier]
        found += frontier
    return found


def tree_cpu_seconds(root: int) -> float:
    """User + system CPU of ``root`` and its live descendants, plus the CPU of every
    descendant already reaped (cutime + cstime: Postfix's smtpd, cleanup and smtp
    processes come and go; the master collects their time when it reaps them)."""
    total = 0
    for pid in tree(root):
        fields = _stat(pid)
        if fields is None:
            continue
        # After the ")" of comm: utime, stime, cutime, cstime are fields 14-17.
        total += int(fields[11]) + int(fields[12])
        if pid == root:
            total += int(fields[13]) + int(fields[14])
    # A reaped grandchild's time goes to its parent's cutime; the parents here are
    # long-lived (master, mailwright serve), so only the root's c-times are added —
    # adding a live child's too would count time its own children already reported.
    return total / _CLK_TCK


def _role(pid: int) -> str:
    """A process's name for the CPU breakdown: mailwright's module (serve, sessions,
    worker), Postfix's program name (smtpd, cleanup, qmgr, smtp...)."""
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return "?"
    for arg in argv:
        if arg.startswith(b"mailwright.runtime."):
            return arg.decode().rsplit(".", 1)[1]
    if any(arg == b"serve" for arg in argv):
        return "serve"
    return Path(argv[0].decode(errors="replace")).name or "?"


def tree_cpu_by_role(root: int) -> dict[str, float]:
    """CPU seconds of the tree's live processes by ``_role``; processes already reaped
    are under "(exited)".  Taking the difference of two calls gives where a run's CPU
    went; a process that exited in between moves its time from its role to
    "(exited)", so only the sum of the differences is exact."""
    out: dict[str, float] = {}
    for pid in tree(root):
        fields = _stat(pid)
        if fields is None:
            continue
        role = _role(pid)
        out[role] = out.get(role, 0.0) + (int(fields[11]) + int(fields[12])) / _CLK_TCK
        if pid == root:
            out["(exited)"] = (int(fields[13]) + int(fields[14])) / _CLK_TCK
    return out


def tree_memory_kib(root: int) -> tuple[int, int]:
    """Summed VmRSS and Pss (KiB) of ``root`` and its live descendants.  RSS counts a
    page shared by N processes N times — Postfix's dozen processes share most of their
    libraries — so Pss (each shared page split among its users) is the fair sum."""
    rss = pss = 0
    for pid in tree(root):
        with contextlib.suppress(OSError, ValueError):
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    rss += int(line.split()[1])
                    break
            for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
                if line.startswith("Pss:"):
                    pss += int(line.split()[1])
                    break
    return rss, pss


# -- the servers ------------------------------------------------------------------------


MAILWRIGHT_RELAY = """\
[relay]
trusted_networks = ["127.0.0.0/8"]
[dns]
# Nobody listens here: the bracketed relayhost needs no lookup (RFC 5321 §5.1 is not
# consulted for "[address]"), and a stray one fails fast instead of asking the system.
nameservers = ["127.0.0.1:{dns_port}"]
timeout = 1.0
attempts = 1
[outbound]
relayhost = "[127.0.0.1]:{sink_port}"
allow_private_addresses = true
tls = "{tls}"
"""


def start_mailwright_relay(
    workdir: Path,
    sink_port: int,
    *,
    processes: int,
    tls: str,
    command: list[str] | None,
    worker_nice: int | None = None,
) -> ServerProcess:
    """``worker_nice``: None keeps ``delivery.worker_idle`` (the default, SCHED_IDLE);
    a number runs the delivery worker as a normal process at that nice value."""
    extra = MAILWRIGHT_RELAY.format(dns_port=free_port(), sink_port=sink_port, tls=tls)
    if worker_nice is not None:
        extra += f"[delivery]\nworker_idle = false\nworker_nice = {worker_nice}\n"
    return start_mailwright(workdir, command, extra_config=extra, processes=processes)


@dataclass
class Postfix:
    folder: Path
    port: int

    @property
    def conf(self) -> Path:
        return self.folder / "conf"

    def master_pid(self) -> int:
        text = (self.folder / "queue" / "pid" / "master.pid").read_text()
        return int(text.split()[0])

    def queue_size(self) -> int:
        """Messages in Postfix's queue folders (incoming, active, deferred...)."""
        total = 0
        for name in ("maildrop", "incoming", "active", "deferred", "hold"):
            for _root, _dirs, files in os.walk(self.folder / "queue" / name):
                total += len(files)
        return total

    def log(self) -> str:
        path = self.folder / "maillog"
        return path.read_text("utf-8", "replace") if path.exists() else ""

    def stop(self) -> None:
        _postfix(self.conf, "stop")
        _wait(lambda: not greets(self.port), POSTFIX_START_TIMEOUT)


def _main_cf(folder: Path, sink_port: int, tls: str) -> str:
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
myhostname = relay.postfix.bench.test
mydomain = postfix.bench.test
myorigin = $mydomain
mydestination =
mynetworks = 127.0.0.0/8
relayhost = [127.0.0.1]:{sink_port}
disable_dns_lookups = yes
smtp_dns_support_level = disabled
smtpd_peername_lookup = no
smtp_tls_security_level = {tls}
alias_maps =
alias_database =
maillog_file_prefixes = {folder}
maillog_file = {folder}/maillog
"""


def _master_cf(port: int) -> str:
    out = []
    for line in Path("/etc/postfix/master.cf").read_text().splitlines():
        if line.startswith("smtp ") and " smtpd" in line:
            line = f"{HOST}:{port} inet n - n - - smtpd"
        out.append(_CHROOTED.sub(r"\1n", line))
    return "\n".join(out) + "\n"


def _postfix(conf: Path, command: str) -> str:
    # Postfix reports start-up errors only to syslog unless it has a terminal: run it
    # under script(1) to see them.
    script = shutil.which("script") or "/usr/bin/script"
    postfix = shutil.which("postfix") or "/usr/sbin/postfix"
    done = subprocess.run(
        [script, "-qc", f"{postfix} -c {conf} {command}", "/dev/null"],
        capture_output=True,
        text=True,
        timeout=POSTFIX_COMMAND_TIMEOUT,
        stdin=subprocess.DEVNULL,
        check=False,
    )
    return done.stdout + done.stderr


def start_postfix(workdir: Path, sink_port: int, *, tls: str) -> Postfix:
    if os.geteuid() != 0:
        raise ServerError("the private Postfix needs root (its daemons switch users)")
    folder = workdir / "postfix"
    for sub in ("conf", "queue", "data"):
        (folder / sub).mkdir(parents=True)
    os.chmod(workdir, 0o755)
    os.chmod(folder, 0o755)
    owner = pwd.getpwnam("postfix")
    os.chown(folder / "data", owner.pw_uid, owner.pw_gid)
    port = free_port()
    (folder / "conf" / "main.cf").write_text(_main_cf(folder, sink_port, tls))
    (folder / "conf" / "master.cf").write_text(_master_cf(port))
    output = _postfix(folder / "conf", "start")
    server = Postfix(folder, port)
    if not _wait(lambda: greets(port), POSTFIX_START_TIMEOUT):
        server.stop()
        raise ServerError(f"private Postfix did not start: {output.strip()[-1000:]}")
    return server
