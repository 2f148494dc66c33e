"""Server subprocesses for the benchmark: start, find the port, measure, always stop.

Both servers print a ``...: listening on 127.0.0.1:PORT`` line; their stdout/stderr go
to a file in the run's temporary folder (a pipe nobody drains could block the server),
which is polled for that line with a deadline.  Every process started here is kept in
``_LIVE`` and killed by ``stop_all`` — the benchmark calls it from ``finally`` and at
interpreter exit, so no server outlives a run, even an interrupted one.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import re
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

HOST = "127.0.0.1"
BENCH_DOMAIN = "bench.local"
BENCH_MAILBOX = "sink"
START_TIMEOUT = 30.0  # seconds for a server to print its listening line
STOP_TIMEOUT = 15.0  # seconds between SIGTERM and SIGKILL
_LISTENING = re.compile(rb"listening on 127\.0\.0\.1:(\d+)")
_CLK_TCK = os.sysconf("SC_CLK_TCK")

MAILWRIGHT_CONFIG = """\
data_dir = "{data_dir}"
[[listener]]
address = "127.0.0.1"
port = 0
[smtp]
hostname = "{domain}"
max_connections = 5000
max_connections_per_ip = 5000
processes = {processes}
[[domain]]
name = "{domain}"
mailboxes = ["{mailbox}"]
[log]
mail_log = "maillog.txt"   # relative to data_dir
"""

_LIVE: list[subprocess.Popen[bytes]] = []
# A command both servers are started under (``set_prefix``), e.g. ``eatmydata`` for a
# no-fsync ceiling or ``taskset -c 1`` to pin them.  It must exec its argument, so
# the process we measure in /proc is the server itself.
_PREFIX: list[str] = []


def set_prefix(prefix: list[str]) -> None:
    _PREFIX[:] = prefix


def _cpu_seconds(pid: int) -> float:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:  # gone meanwhile
        return 0.0
    # After the ")" of comm: state is field 3, utime 14 and stime 15 (1-based).
    return (int(fields[11]) + int(fields[12])) / _CLK_TCK


def _children(pid: int) -> list[int]:
    """Live processes whose parent is ``pid`` (from /proc; field 4 is the ppid)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == pid:
                found.append(int(entry.name))
    return found


def _cmdline(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return b""


# The delivery worker's module in its command line, now and before the runtime package.
WORKER_MODULES = (b"mailwright.runtime.worker", b"mailwright.workerproc")


def _is_worker(cmdline: bytes) -> bool:
    return any(module in cmdline for module in WORKER_MODULES)


class ServerError(RuntimeError):
    """A server did not start, or died during a measurement."""


@dataclass
class ServerProcess:
    """One running server: its process, port and folders."""

    name: str
    proc: subprocess.Popen[bytes]
    port: int
    workdir: Path
    log_path: Path
    data_dir: Path
    extra: dict[str, str] = field(default_factory=dict)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc.poll() is None

    def receivers(self) -> list[int]:
        """The processes that receive mail: the server and its session processes
        (mailwright's ``smtp.processes``), not the delivery worker (``runtime.worker``;
        ``workerproc`` in checkouts before the runtime package, for before/after runs)."""
        return [self.pid] + [
            child for child in _children(self.pid) if not _is_worker(_cmdline(child))
        ]

    def status(self, key: str) -> int:
        """A number from /proc/PID/status: VmRSS, VmHWM (in KiB), Threads...; summed
        over the receiving processes (for VmHWM: the sum of each one's peak)."""
        return sum(proc_status(pid, key) for pid in self.receivers())

    def cpu_seconds(self) -> float:
        """User + system CPU time so far of the whole process (all threads) and of its
        live child processes (mailwright's delivery worker)."""
        return _cpu_seconds(self.pid) + sum(_cpu_seconds(child) for child in _children(self.pid))

    def own_cpu_seconds(self) -> float:
        """The receiving processes (for mailwright: without the delivery worker)."""
        return sum(_cpu_seconds(pid) for pid in self.receivers())

    def output(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def stop(self) -> int | None:
        """SIGTERM, wait, SIGKILL if needed; returns the exit status."""
        return _terminate(self.proc)


def proc_status(pid: int, key: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    raise ServerError(f"no {key} in /proc/{pid}/status")


def _terminate(proc: subprocess.Popen[bytes]) -> int | None:
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            proc.wait(timeout=STOP_TIMEOUT)
    if proc in _LIVE:
        _LIVE.remove(proc)
    return proc.returncode


def stop_all() -> None:
    """Stop every server this module started and that is still running."""
    for proc in list(_LIVE):
        _terminate(proc)


atexit.register(stop_all)


def _spawn(name: str, argv: list[str], workdir: Path, data_dir: Path, cwd: Path) -> ServerProcess:
    workdir.mkdir(parents=True, exist_ok=True)
    log_path = workdir / f"{name}.out"
    with open(log_path, "wb") as out:
        proc = subprocess.Popen(
            [*_PREFIX, *argv],
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            cwd=cwd,
        )
    _LIVE.append(proc)
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        match = _LISTENING.search(log_path.read_bytes())
        if match:
            return ServerProcess(name, proc, int(match.group(1)), workdir, log_path, data_dir)
        if proc.poll() is not None:
            break
        time.sleep(0.02)
    _terminate(proc)
    text = log_path.read_text(errors="replace")
    raise ServerError(f"{name} did not start (exit {proc.returncode}):\n{text[-2000:]}")


def recommended_processes() -> int:
    """``smtp.processes`` as the README recommends for a busy MX: one session process
    per core but one, which the delivery worker and the main process need."""
    return max(1, (os.cpu_count() or 1) - 1)


def mailwright_command() -> list[str]:
    """The ``mailwright`` console script of this interpreter's environment."""
    script = Path(sys.executable).parent / "mailwright"
    if script.exists():
        return [str(script)]
    return [sys.executable, "-m", "mailwright"]


def start_mailwright(
    workdir: Path,
    command: list[str] | None = None,
    *,
    extra_config: str = "",
    processes: int = 0,
) -> ServerProcess:
    """``mailwright serve -c CONFIG`` on a fresh data folder and a free port.

    ``command`` replaces ``mailwright`` itself (e.g. another checkout's interpreter).
    ``processes`` is ``smtp.processes``: session processes (0: sessions in the server).
    ``extra_config`` is TOML appended to the config (more ``[[listener]]`` tables, a
    ``[tls]`` section...); ``port`` is the first (inbound) listener's.
    """
    data_dir = workdir / "data"
    config = workdir / "mailwright.toml"
    workdir.mkdir(parents=True, exist_ok=True)
    config.write_text(
        MAILWRIGHT_CONFIG.format(
            data_dir=data_dir, domain=BENCH_DOMAIN, mailbox=BENCH_MAILBOX, processes=processes
        )
        + extra_config
    )
    argv = [*(command or mailwright_command()), "serve", "-c", str(config)]
    return _spawn("mailwright", argv, workdir, data_dir, cwd=workdir)


def start_aiosmtpd(
    workdir: Path, *, uvloop: bool = False, inline_fsync: bool = False
) -> ServerProcess:
    """The durable aiosmtpd baseline (``aiosmtpd_baseline.py``) on a free port."""
    data_dir = workdir / "messages"
    script = Path(__file__).with_name("aiosmtpd_baseline.py")
    argv = [sys.executable, str(script), "--port", "0", "--dir", str(data_dir)]
    if uvloop:
        argv.append("--uvloop")
    if inline_fsync:
        argv.append("--inline-fsync")
    return _spawn("aiosmtpd", argv, workdir, data_dir, cwd=workdir)


# -- what a server stored ---------------------------------------------------------------


def count_files(directory: Path) -> int:
    """Regular files directly in ``directory`` (0 if it does not exist)."""
    try:
        return sum(1 for e in os.scandir(directory) if e.is_file(follow_symlinks=False))
    except FileNotFoundError:
        return 0


def maildir_new_count(data_dir: Path) -> int:
    """Messages in every ``new/`` folder under ``data_dir/mail``."""
    total = 0
    for root, dirs, _files in os.walk(data_dir / "mail"):
        if os.path.basename(root) == "new":
            total += count_files(Path(root))
            dirs.clear()
    return total


def maillog_events(data_dir: Path, name: str = "maillog.txt") -> dict[str, int]:
    """How many lines of each event the mail log has (text or JSON format)."""
    counts: dict[str, int] = {}
    try:
        text = (data_dir / name).read_text(errors="replace")
    except FileNotFoundError:
        return counts
    for line in text.splitlines():
        if line.startswith("{"):
            match = re.search(r'"event":"([a-z_]+)"', line)
            event = match.group(1) if match else "?"
        else:
            parts = line.split(" ", 3)
            event = parts[2] if len(parts) > 2 else "?"
        counts[event] = counts.get(event, 0) + 1
    return counts
