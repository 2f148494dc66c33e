"""The shipped systemd unit, ``contrib/mailwright.service``, against the real server.

The unit's system-call filter is applied for real: its ``SystemCallFilter=`` and
``SystemCallErrorNumber=`` lines are resolved as systemd resolves them (the ``@sets``
expanded by ``systemd-analyze syscall-filter``), loaded with libseccomp's Python
bindings by the system Python (``helpers/seccomp_exec.py``), which then execs the
venv's ``mailwright serve``.  The filter is inherited by the delivery worker, which the
unit's old filter (``~@privileged @resources``, no errno) killed with SIGSYS at its
``sched_setscheduler`` call, restart after restart, while acknowledged mail waited.
``systemd-analyze verify`` checks the unit's directives.
"""

from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path

import pytest

from helpers.procs import children_of, wait_until
from helpers.servers import EXAMPLE, SubprocessServer
from helpers.syscall_filter import UnitFilter, seccomp_spec, syscall_sets, unit_filter, write_spec
from helpers.tools import require_python_module, require_tool
from helpers.wire import message, queue_id_of, smtplib_client

pytestmark = pytest.mark.interop

REPO = Path(__file__).resolve().parents[2]
UNIT = REPO / "contrib" / "mailwright.service"
LAUNCHER = Path(__file__).resolve().parents[1] / "helpers" / "seccomp_exec.py"
SYSTEM_PYTHON = "/usr/bin/python3"  # Debian's python3-seccomp is for this interpreter
SENDER = "sender@remote.test"
WAIT = 10.0  # seconds a delivery, or the worker's death, may take under load
# The filter the unit shipped with (issue 8, item 6): the worker dies of SIGSYS.
OLD_FILTER = UnitFilter(filters=["@system-service", "~@privileged @resources"])
SIGSYS_EXIT = f"delivery worker exited (status -{int(signal.SIGSYS)})"
# SQLite running as root chowns each journal/WAL file it creates to the database's
# owner (``robustFchown``, only when the effective uid is 0).  The unit runs as
# User=mailwright, where SQLite never makes the call; a test running as root (CI in a
# container) allows it so that it tests the unit's filter, not the test's uid.
ROOT_ONLY_CALLS = ("fchown",)
PRIORITY_REFUSED = (
    "mailwright: delivery worker: cannot lower its CPU priority "
    "(SCHED_IDLE: Operation not permitted; nice 10: Operation not permitted); "
    "delivering at normal priority"
)


class FilteredServer(SubprocessServer):
    """``mailwright serve`` under the seccomp filter described by ``spec_path``."""

    def __init__(self, workdir: Path, spec_path: Path) -> None:
        super().__init__(workdir)
        self.spec_path = spec_path

    def command(self) -> list[str]:
        return [SYSTEM_PYTHON, str(LAUNCHER), str(self.spec_path), *super().command()]


@pytest.fixture
def run_filtered(tmp_path: Path):
    """Start a server under a unit's filter; killed at teardown."""
    python = require_python_module(SYSTEM_PYTHON, "seccomp", package="python3-seccomp")
    assert python == SYSTEM_PYTHON
    sets = syscall_sets(require_tool("systemd-analyze", package="systemd"))
    started: list[FilteredServer] = []

    def run(unit: UnitFilter) -> FilteredServer:
        spec = seccomp_spec(unit, sets)
        if os.geteuid() == 0 and spec["default"] != "allow":
            spec["rules"].update(dict.fromkeys(ROOT_ONLY_CALLS, "allow"))
        spec_path = write_spec(tmp_path / f"seccomp{len(started)}.json", spec)
        workdir = tmp_path / f"proc{len(started)}"
        workdir.mkdir()
        server = FilteredServer(workdir, spec_path)
        started.append(server)
        return server.start()

    yield run
    for server in started:
        server.kill()


def send(server: SubprocessServer) -> str:
    with smtplib_client(server.host, server.port) as client:
        client.ehlo("client.test")
        client.mail(SENDER)
        client.rcpt(f"alice@{EXAMPLE}")
        code, reply = client.data(message("under the unit's system-call filter"))
    assert code == 250, reply
    return queue_id_of(reply)


def only_worker(server: SubprocessServer) -> int:
    assert server.proc is not None
    workers = children_of(server.proc.pid)
    assert len(workers) == 1, workers
    return workers[0]


def seccomp_mode(pid: int) -> str:
    """The ``Seccomp:`` field of /proc/PID/status: "2" is filter mode."""
    with open(f"/proc/{pid}/status", encoding="ascii") as status:
        return next(line.split()[1] for line in status if line.startswith("Seccomp:"))


def test_unit_system_call_filter_lets_the_worker_deliver(run_filtered):
    server = run_filtered(unit_filter(UNIT.read_text("utf-8")))
    worker = only_worker(server)
    assert seccomp_mode(worker) == "2"  # the filter survived exec and fork
    qid = send(server)
    assert server.message_with_id(EXAMPLE, "alice", qid, timeout=WAIT)
    # The same worker delivered (never killed and restarted), at the priority the
    # configuration asks for: the unit allows sched_setscheduler back.
    assert only_worker(server) == worker
    assert os.sched_getscheduler(worker) == os.SCHED_IDLE
    assert "delivery worker exited" not in server.stdout()
    assert "delivery worker:" not in server.stderr()


def test_old_unit_filter_kills_the_worker_and_mail_waits(run_filtered):
    """What the unit used to do, shown under the same harness: it proves the filter
    is really applied, and that the test above would fail with the old unit."""
    server = run_filtered(OLD_FILTER)
    qid = send(server)
    # Killed at start-up, then again after the first restart delay.
    assert wait_until(lambda: server.stdout().count(SIGSYS_EXIT) >= 2, WAIT), server.stdout()
    assert server.message_files(EXAMPLE, "alice") == []
    assert f"{qid}: delivered" not in server.mail_log()


def test_refused_priority_calls_degrade_the_worker_instead_of_killing_it(run_filtered):
    """The old deny list with ``SystemCallErrorNumber=EPERM``: both priority calls
    fail with EPERM; the worker says so in one line and delivers."""
    server = run_filtered(UnitFilter(filters=OLD_FILTER.filters, error_number="EPERM"))
    worker = only_worker(server)
    assert seccomp_mode(worker) == "2"
    qid = send(server)
    assert server.message_with_id(EXAMPLE, "alice", qid, timeout=WAIT)
    assert only_worker(server) == worker
    assert os.sched_getscheduler(worker) == os.SCHED_OTHER
    assert server.stderr().count(PRIORITY_REFUSED) == 1, server.stderr()
    assert "delivery worker exited" not in server.stdout()


def verify(unit: Path) -> list[str]:
    """``systemd-analyze verify``'s complaints about ``unit``'s own lines."""
    done = subprocess.run(
        [require_tool("systemd-analyze", package="systemd"), "verify", str(unit)],
        capture_output=True,
        text=True,
        timeout=60,
        stdin=subprocess.DEVNULL,
    )
    assert done.returncode == 0, done
    return [line for line in (done.stdout + done.stderr).splitlines() if str(unit) in line]


def test_systemd_analyze_verifies_the_unit():
    assert verify(UNIT) == []


def test_systemd_analyze_verify_reports_a_bad_directive(tmp_path: Path):
    """The check above can fail: a misspelt system-call set is reported."""
    bad = tmp_path / "mailwright.service"
    bad.write_text(UNIT.read_text("utf-8").replace("@system-service", "@system-servic", 1), "utf-8")
    assert any("@system-servic" in line for line in verify(bad))
