"""The delivery worker process (``delivery.worker``, the default): it delivers what the
server stores, is restarted when it dies, dies with the server, stops with it in order,
and never runs beside a second queue runner on the same spool.
"""

from __future__ import annotations

import errno
import os
import signal
import socket
import time
from pathlib import Path

import pytest

from helpers.procs import alive, children_of, stat_fields, wait_until
from helpers.servers import EXAMPLE, HOST, InProcessServer, SubprocessServer, build_config
from helpers.wire import message, queue_id_of, smtplib_client
from mailwright import workerproc
from mailwright.spool.embedded import EmbeddedSpool
from mailwright.spool.runnerlock import RunnerLock, SpoolBusy
from mailwright.startup import StartupError

SENDER = "sender@remote.test"
WAIT = 10.0  # seconds any process change below may take


def send(server, box: str = "alice", subject: str = "worker") -> str:
    with smtplib_client(server.host, server.port) as client:
        client.ehlo("client.test")
        client.mail(SENDER)
        client.rcpt(f"{box}@{EXAMPLE}")
        code, reply = client.data(message(subject))
    assert code == 250, reply
    return queue_id_of(reply)


@pytest.fixture
def worker_server(tmp_path: Path):
    server = InProcessServer(build_config(tmp_path / "data", worker=True)).start()
    yield server
    server.stop()


def test_subprocess_server_delivers_through_its_worker_and_stops_in_order(
    make_subprocess_server,
):
    server: SubprocessServer = make_subprocess_server()
    assert server.proc is not None
    workers = children_of(server.proc.pid)
    assert len(workers) == 1, workers
    with open(f"/proc/{workers[0]}/cmdline", "rb") as cmdline:
        assert b"mailwright.workerproc" in cmdline.read()
    qid = send(server)
    assert len(server.maildir_messages(EXAMPLE, "alice")) == 1
    assert server.terminate() == 0
    assert wait_until(lambda: not alive(workers[0]), WAIT)
    log = server.mail_log()
    assert f"{qid}: delivered" in log


def test_worker_dies_with_a_sigkilled_server_and_mail_survives(make_subprocess_server):
    server: SubprocessServer = make_subprocess_server()
    assert server.proc is not None
    (worker,) = children_of(server.proc.pid)
    server.kill()
    # PR_SET_PDEATHSIG: no worker outlives its server to race the next one.
    assert wait_until(lambda: not alive(worker), WAIT), "worker outlived its SIGKILLed server"
    server.start()
    qid = send(server)
    assert server.message_with_id(EXAMPLE, "alice", qid)


def test_worker_ignores_sigint_and_sigterm(make_subprocess_server):
    """Ctrl-C and a service manager signal the whole process group: the worker must
    leave its stop to the server, which closes the pipe after draining sessions."""
    server: SubprocessServer = make_subprocess_server()
    assert server.proc is not None
    (worker,) = children_of(server.proc.pid)

    # delivery.worker_idle (default): SCHED_IDLE, set once the worker has read its
    # config, after its signal handlers.
    assert wait_until(lambda: os.sched_getscheduler(worker) == os.SCHED_IDLE, WAIT)
    os.kill(worker, signal.SIGINT)
    os.kill(worker, signal.SIGTERM)
    # A marker: a message sent after the signals is delivered by this worker, so the
    # signals were handled (ignored) before it; a restarted worker would be another.
    qid = send(server)
    assert server.message_with_id(EXAMPLE, "alice", qid)
    assert alive(worker)
    assert children_of(server.proc.pid) == [worker]
    # Threads made for the delivery inherited the policy.
    tids = [int(t) for t in os.listdir(f"/proc/{worker}/task")]
    assert len(tids) > 1
    assert all(os.sched_getscheduler(tid) == os.SCHED_IDLE for tid in tids)


def test_killed_worker_is_restarted_and_delivers(worker_server: InProcessServer):
    worker = worker_server.app.worker
    assert worker is not None and worker.pid is not None
    first = worker.pid
    os.kill(first, signal.SIGKILL)
    assert wait_until(lambda: worker.starts == 2, WAIT), "the worker was not restarted"
    assert worker.pid != first
    qid = send(worker_server)
    assert worker_server.message_with_id(EXAMPLE, "alice", qid)
    assert any("delivery worker exited" in line for line in worker_server.announced)


def test_mail_stored_while_the_worker_is_down_is_delivered_by_the_next_one(
    worker_server: InProcessServer,
):
    worker = worker_server.app.worker
    assert worker is not None and worker.pid is not None
    os.kill(worker.pid, signal.SIGKILL)
    qid = send(worker_server)  # its notification goes nowhere
    assert worker_server.message_with_id(EXAMPLE, "alice", qid)


def test_a_mailbox_broken_after_start_does_not_stop_a_restarted_worker(
    worker_server: InProcessServer,
):
    """One broken Maildir (its tmp/ a file) defers that mailbox only, as it does with
    the runner in the server, also after the worker was restarted.  Regression: the
    restarted worker created every Maildir at start-up and exited on the broken one,
    so it was restarted forever and delivered nothing."""
    worker = worker_server.app.worker
    assert worker is not None and worker.pid is not None
    assert worker_server.message_with_id(EXAMPLE, "alice", send(worker_server))
    tmp = worker_server.maildir(EXAMPLE, "bob") / "tmp"
    tmp.rmdir()
    tmp.write_bytes(b"")
    os.kill(worker.pid, signal.SIGKILL)  # a crash, an OOM kill
    assert wait_until(lambda: worker.starts == 2, WAIT), "the worker was not restarted"
    qid = send(worker_server, "alice", "after the restart")
    assert worker_server.message_with_id(EXAMPLE, "alice", qid)


def test_stop_right_after_start_does_not_hang(tmp_path: Path):
    """Regression: the pipe closed before the worker's runner first ran, and the
    runner ignored that stop and idled forever."""
    server = InProcessServer(build_config(tmp_path / "data", worker=True)).start()
    started = time.monotonic()
    server.stop(timeout=15)
    assert time.monotonic() - started < 10


def test_runner_lock_excludes_a_second_runner(tmp_path: Path):
    first, second = RunnerLock(tmp_path), RunnerLock(tmp_path)
    first.acquire()
    with pytest.raises(
        SpoolBusy, match=rf"in use by another mailwright process \(pid {os.getpid()}\)"
    ):
        second.acquire(timeout=0.2)
    first.release()
    second.acquire(timeout=1)
    assert second.held
    second.release()


def test_a_failed_start_releases_the_runner_lock(tmp_path: Path):
    """Regression: a start that failed after taking the runner lock (here: the port is
    taken) kept the lock's descriptor open, so the next App on the same data folder
    in this process waited LOCK_WAIT and gave up."""
    with socket.create_server((HOST, 0)) as taken:
        config = build_config(tmp_path / "data", port=taken.getsockname()[1])
        with pytest.raises(StartupError, match="address already in use"):
            InProcessServer(config).start()
    lock = RunnerLock(EmbeddedSpool(config.data_dir).root)
    lock.acquire(timeout=1)
    assert lock.held
    lock.release()
    server = InProcessServer(build_config(tmp_path / "data")).start()  # the data is fine
    server.stop()


def test_worker_waits_for_the_runner_lock(worker_server: InProcessServer):
    """While another process holds the lock (a previous worker still finishing), a new
    worker does not run the queue: mail waits, then is delivered once it is free."""
    worker = worker_server.app.worker
    assert worker is not None and worker.pid is not None
    lock = RunnerLock(worker_server.data_dir / "spool")
    os.kill(worker.pid, signal.SIGKILL)
    assert wait_until(lambda: not alive(worker.pid) or worker.starts == 2, WAIT)
    lock.acquire(timeout=5)  # before the restarted worker (1 s back-off) gets it
    try:
        assert wait_until(lambda: worker.starts == 2, WAIT)
        qid = send(worker_server)
        time.sleep(1.0)
        assert worker_server.message_files(EXAMPLE, "alice") == []
    finally:
        lock.release()
    assert worker_server.message_with_id(EXAMPLE, "alice", qid)


def test_worker_priority_settings(make_subprocess_server):
    """worker_idle false: a normal process at nice worker_nice, which always gets its
    fair share of the CPU; also for every one of its threads made later."""
    server: SubprocessServer = make_subprocess_server(
        extra={"delivery": {"worker_idle": False, "worker_nice": 7}}
    )
    assert server.proc is not None
    (worker,) = children_of(server.proc.pid)

    def niceness(tid: int) -> int:
        return int(stat_fields(f"/proc/{worker}/task/{tid}/stat")[16])

    assert wait_until(lambda: niceness(worker) == 7, WAIT)
    qid = send(server)  # delivery starts the worker's threads
    assert server.message_with_id(EXAMPLE, "alice", qid)
    tids = [int(t) for t in os.listdir(f"/proc/{worker}/task")]
    assert len(tids) > 1
    assert all(niceness(tid) == 7 for tid in tids)
    assert os.sched_getscheduler(worker) == os.SCHED_OTHER


def refuse(monkeypatch: pytest.MonkeyPatch, name: str, errno_value: int) -> None:
    """``os.<name>`` fails as a sandbox's seccomp filter with an errno makes it fail.
    The interop test ``test_systemd_unit`` refuses the real system calls."""

    def refused(*args: object) -> None:
        raise OSError(errno_value, os.strerror(errno_value))

    monkeypatch.setattr(workerproc.os, name, refused)


def test_worker_priority_refused_falls_back_to_nice_and_says_so(monkeypatch, tmp_path):
    refuse(monkeypatch, "sched_setscheduler", errno.EPERM)
    niced: list[int] = []
    monkeypatch.setattr(workerproc.os, "nice", niced.append)
    refused = workerproc.lower_priority(build_config(tmp_path))
    assert refused == (
        "cannot run at idle CPU priority (SCHED_IDLE: Operation not permitted); running at nice 10"
    )
    assert niced == [10]


def test_worker_priority_refused_entirely_runs_at_normal_priority(monkeypatch, tmp_path):
    refuse(monkeypatch, "sched_setscheduler", errno.EPERM)
    refuse(monkeypatch, "nice", errno.ENOSYS)
    refused = workerproc.lower_priority(build_config(tmp_path))
    assert refused == (
        "cannot lower its CPU priority (SCHED_IDLE: Operation not permitted; "
        "nice 10: Function not implemented); delivering at normal priority"
    )


def test_worker_nice_refused_runs_at_normal_priority(monkeypatch, tmp_path):
    refuse(monkeypatch, "nice", errno.EPERM)
    config = build_config(tmp_path, extra={"delivery": {"worker_idle": False, "worker_nice": 7}})
    assert workerproc.lower_priority(config) == (
        "cannot lower its CPU priority (nice 7: Operation not permitted); "
        "delivering at normal priority"
    )
