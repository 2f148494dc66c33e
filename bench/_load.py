"""Load for the benchmark: Postfix ``smtp-source`` runs and idle TCP connections."""

from __future__ import annotations

import contextlib
import resource
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass

from _servers import BENCH_DOMAIN, BENCH_MAILBOX, HOST, ServerProcess

SMTP_SOURCE = "smtp-source"
SENDER = "bench@client.local"
HELO_NAME = "client.local"
GREETING_TIMEOUT = 10.0  # seconds to wait for one 220 greeting
MAX_GREETING = 4096  # octets; a greeting longer than this is an error


def smtp_source_path() -> str:
    """Where smtp-source is (Debian installs it in /usr/sbin, often not on PATH)."""
    found = shutil.which(SMTP_SOURCE) or shutil.which(f"/usr/sbin/{SMTP_SOURCE}")
    if found is None:
        raise SystemExit("smtp-source not found: install Postfix (Debian: apt-get install postfix)")
    return found


@dataclass
class SourceRun:
    seconds: float
    returncode: int
    stderr: str
    argv: list[str]


def smtp_source(
    port: int,
    *,
    sessions: int,
    messages: int,
    size: int,
    reuse: bool,
    timeout: float,
) -> SourceRun:
    """Send ``messages`` messages of ``size`` payload octets over ``sessions`` parallel
    sessions and time it (wall clock).  ``reuse``: several messages per connection
    (``-d``); otherwise one connection per message, smtp-source's default."""
    argv = [
        smtp_source_path(),
        "-s",
        str(sessions),
        "-m",
        str(messages),
        "-l",
        str(size),
        "-M",
        HELO_NAME,
        "-f",
        SENDER,
        "-t",
        f"{BENCH_MAILBOX}@{BENCH_DOMAIN}",
        "-S",
        "mailwright acceptance benchmark",
    ]
    if reuse:
        argv.append("-d")
    argv.append(f"{HOST}:{port}")
    start = time.perf_counter()
    try:
        done = subprocess.run(
            argv, capture_output=True, timeout=timeout, stdin=subprocess.DEVNULL, check=False
        )
    except subprocess.TimeoutExpired as exc:
        # subprocess.run has killed smtp-source already.
        stderr = (exc.stderr or b"").decode(errors="replace")
        return SourceRun(time.perf_counter() - start, -9, f"timed out: {stderr}", argv)
    seconds = time.perf_counter() - start
    return SourceRun(seconds, done.returncode, done.stderr.decode(errors="replace"), argv)


def raise_nofile(needed: int) -> tuple[int, int]:
    """Raise the soft RLIMIT_NOFILE to at least ``needed`` (up to the hard limit)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = needed if hard == resource.RLIM_INFINITY else min(needed, hard)
    if soft != resource.RLIM_INFINITY and soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)


def _greeting(sock: socket.socket) -> bytes:
    """Read one reply (all its lines) from a fresh connection, bounded in size."""
    data = b""
    while len(data) < MAX_GREETING:
        chunk = sock.recv(MAX_GREETING)
        if not chunk:
            break
        data += chunk
        last = data.rstrip(b"\r\n").rsplit(b"\n", 1)[-1]
        if data.endswith(b"\n") and last[3:4] != b"-":
            break
    return data


def _open(port: int) -> socket.socket:
    sock = socket.create_connection((HOST, port), timeout=GREETING_TIMEOUT)
    try:
        greeting = _greeting(sock)
        if not greeting.startswith(b"220"):
            raise RuntimeError(f"unexpected greeting {greeting[:80]!r}")
    except BaseException:
        sock.close()
        raise
    return sock


def idle_connections(server: ServerProcess, count: int, settle: float) -> dict[str, object]:
    """Hold ``count`` greeted, idle connections; the server's RSS growth per connection.

    A few connections are opened and closed first, so allocator pools that any first
    connection creates are not charged to the idle ones.
    """
    raise_nofile(count + 256)
    for _ in range(20):
        _open(server.port).close()
    time.sleep(settle)
    rss_before = server.status("VmRSS")
    socks: list[socket.socket] = []
    try:
        start = time.perf_counter()
        for _ in range(count):
            socks.append(_open(server.port))
        open_seconds = time.perf_counter() - start
        time.sleep(settle)
        if not server.alive():
            raise RuntimeError(f"{server.name} died holding idle connections")
        rss_after = server.status("VmRSS")
        hwm = server.status("VmHWM")
    finally:
        for sock in socks:
            with contextlib.suppress(OSError):
                sock.close()
    time.sleep(settle)
    rss_closed = server.status("VmRSS") if server.alive() else None
    return {
        "connections": count,
        "rss_before_kib": rss_before,
        "rss_after_kib": rss_after,
        "rss_after_close_kib": rss_closed,
        "vm_hwm_kib": hwm,
        "kib_per_connection": round((rss_after - rss_before) / count, 2),
        "open_seconds": round(open_seconds, 3),
    }
