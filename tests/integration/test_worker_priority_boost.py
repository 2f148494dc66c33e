"""The delivery worker's adaptive priority (``runtime.priority``) in a real ``mailwright
serve``: starved at SCHED_IDLE by CPU hogs at normal priority on every core while mail
keeps arriving, it switches every thread to SCHED_OTHER and says so; once the backlog
is delivered, it goes back to SCHED_IDLE and says so.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator

import pytest

from helpers.procs import children_of, wait_until
from helpers.servers import EXAMPLE, SubprocessServer
from helpers.wire import message, queue_id_of, smtplib_client
from mailwright.runtime.priority import BACKLOG_CALM_FOR

SENDER = "sender@remote.test"
# Seconds the hogs may run at most, even if this test process is killed: they end
# themselves.
HOG_LIFETIME = 120.0
# Seconds the starved worker may take to boost: mail must wait BACKLOG_BOOST_AFTER,
# then an idle-priority timer must fire on a machine whose every core is busy.
BOOST_WAIT = 60.0
# Seconds the backlog may take to be delivered, plus the calm period before idle.
RETURN_WAIT = 60.0 + BACKLOG_CALM_FOR
BOOSTED = "leaving idle CPU priority for the normal share (SCHED_OTHER)"
RETURNED = "back to idle CPU priority (SCHED_IDLE)"

HOG = (
    "import os, time\n"
    "os.sched_setscheduler(0, os.SCHED_OTHER, os.sched_param(0))\n"
    f"end = time.monotonic() + {HOG_LIFETIME}\n"
    "while time.monotonic() < end:\n"
    "    pass\n"
)


@pytest.fixture
def cpu_hogs() -> Iterator[list[subprocess.Popen[bytes]]]:
    """One busy loop at normal priority per core (bounded in time, killed at the end)."""
    hogs = [subprocess.Popen([sys.executable, "-c", HOG]) for _ in range(os.cpu_count() or 1)]
    try:
        yield hogs
    finally:
        for hog in hogs:
            hog.kill()
            hog.wait()


def send(server: SubprocessServer, subject: str) -> str:
    with smtplib_client(server.host, server.port) as client:
        client.ehlo("client.test")
        client.mail(SENDER)
        client.rcpt(f"alice@{EXAMPLE}")
        code, reply = client.data(message(subject))
    assert code == 250, reply
    return queue_id_of(reply)


def policies(pid: int) -> set[int]:
    """The scheduling policy of every thread of ``pid`` (threads that end are skipped)."""
    found = set()
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            found.add(os.sched_getscheduler(int(tid)))
        except ProcessLookupError:
            continue
    return found


def delivered(server: SubprocessServer, qids: list[str]) -> bool:
    log = server.mail_log()
    return all(f"{qid}: delivered" in log for qid in qids)


def test_starved_worker_takes_the_normal_share_and_returns_to_idle_after_the_backlog(
    make_subprocess_server, cpu_hogs
):
    debug_log = {"mail_log": "mail.log", "flush_interval": 0, "debug": True}
    server: SubprocessServer = make_subprocess_server(extra={"log": debug_log})
    assert server.proc is not None
    (worker,) = children_of(server.proc.pid)
    assert wait_until(lambda: policies(worker) == {os.SCHED_IDLE}, 10.0)

    # Mail keeps arriving while the hogs take every core: the idle worker falls behind
    # and the oldest due message's wait passes BACKLOG_BOOST_AFTER.
    qids: list[str] = []
    deadline = time.monotonic() + BOOST_WAIT
    while BOOSTED not in server.stderr():
        assert time.monotonic() < deadline, f"no boost; stderr: {server.stderr()[-2000:]}"
        qids.append(send(server, f"load {len(qids)}"))
    # Every thread switched (the policy is per thread: the aiosqlite and executor
    # threads too), while the hogs still run.
    assert len(os.listdir(f"/proc/{worker}/task")) > 1
    assert wait_until(lambda: policies(worker) == {os.SCHED_OTHER}, 10.0), policies(worker)
    boost_line = next(line for line in server.stderr().splitlines() if BOOSTED in line)
    assert "INFO mailwright.runtime.priority: delivery worker: mail due" in boost_line

    # At the normal share the backlog is delivered even though the hogs still run.
    assert wait_until(lambda: delivered(server, qids), RETURN_WAIT), len(qids)
    assert wait_until(lambda: RETURNED in server.stderr(), RETURN_WAIT)
    assert wait_until(lambda: policies(worker) == {os.SCHED_IDLE}, 10.0), policies(worker)
    assert server.stderr().count(BOOSTED) == 1
    assert "WARNING" not in server.stderr()

    # Still idle, and still delivering, once the load is gone.
    for hog in cpu_hogs:
        hog.kill()
    qid = send(server, "after")
    assert wait_until(lambda: delivered(server, [qid]), 10.0)
    assert policies(worker) == {os.SCHED_IDLE}
