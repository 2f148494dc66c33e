"""The composition root builds every process kind (``runtime.compose``).

* the main process's ``Foundation``: the spool recovered and the runner lock held
  until it closes (the in-process server itself: every ``InProcessServer`` test);
* a session process (``python -m mailwright.runtime.sessions``) started by hand on a
  socket pair, as ``SessionProcesses`` does: it says ``Ready``, serves a connection
  handed over with SCM_RIGHTS, reports its end, logs a bad control line and goes on,
  and stops in order on ``Stop``;
* a delivery worker (``python -m mailwright.runtime.worker``) on a pipe: it holds the
  runner lock, delivers the message it is told of, logs a bad line and goes on, and
  exits 0 on ``Stop``, releasing the lock.
"""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from helpers.procs import wait_until
from helpers.servers import EXAMPLE, HOST, build_config
from helpers.spoolkit import envelope, put
from mailwright.runtime import control
from mailwright.runtime.compose import Foundation
from mailwright.spool.embedded import EmbeddedSpool
from mailwright.spool.runnerlock import RunnerLock, SpoolBusy

WAIT = 15.0  # seconds a child may take to start, answer or stop


def lock_is_free(spool_root: Path) -> bool:
    lock = RunnerLock(spool_root)
    try:
        lock.acquire(timeout=0.05)
    except SpoolBusy:
        return False
    lock.release()
    return True


def test_the_main_process_foundation_holds_the_runner_lock_until_closed(tmp_path: Path):
    config = build_config(tmp_path / "data")

    async def main() -> None:
        base = Foundation(config, recover=True, runner_lock=True)
        maillog = await base.open()
        assert not lock_is_free(base.spool.root)
        message = await put(base.spool, envelope(f"alice@{EXAMPLE}"))
        assert (await base.spool.load(message.queue_id)) is not None
        maillog.listening(HOST, 25, "mx")
        await base.close()
        assert lock_is_free(base.spool.root)

    asyncio.run(main())
    assert "listening" in (tmp_path / "data" / "mail.log").read_text()


def start_child(module: str, config_frame: bytes, *args: str, **kwargs) -> subprocess.Popen:
    proc = subprocess.Popen(
        [sys.executable, "-m", module, str(os.getpid()), *args],
        stdin=subprocess.PIPE,
        stderr=subprocess.PIPE,
        **kwargs,
    )
    assert proc.stdin is not None
    proc.stdin.write(config_frame)
    proc.stdin.flush()
    return proc


def receive(sock: socket.socket) -> list[control.Message]:
    sock.settimeout(WAIT)
    data, fds = control.receive_datagram(sock)
    assert fds == []
    messages, problems = control.unpack(data, control.TO_MAIN)
    assert problems == []
    return messages


def test_a_session_process_serves_a_handed_over_connection(tmp_path: Path):
    config = build_config(tmp_path / "data")
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    listener = socket.create_server((HOST, 0))
    with ours, listener:
        proc = start_child(
            "mailwright.runtime.sessions",
            control.config_frame(config),
            str(theirs.fileno()),
            pass_fds=(theirs.fileno(),),
        )
        theirs.close()
        assert proc.stdin is not None
        proc.stdin.close()
        try:
            assert receive(ours) == [control.Ready()]
            control.send_datagram(ours, b"zzz\nS 1")  # one bad line, one good
            client = socket.create_connection(listener.getsockname(), timeout=WAIT)
            conn, _ = listener.accept()
            with client, conn:
                data = control.encode_batch([control.Adopt(0, HOST)])
                control.send_datagram(ours, data, [conn.fileno()])
                conn.close()  # the session process has its own copy
                assert client.recv(512).startswith(b"220 ")
                client.sendall(b"QUIT\r\n")
                assert client.recv(512).startswith(b"221 ")
            assert receive(ours) == [control.Released(HOST)]
            control.send_datagram(ours, control.encode(control.Stop()))
            assert proc.wait(timeout=WAIT) == 0
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        assert proc.stderr is not None
        stderr = proc.stderr.read().decode()
    assert "control channel: unknown message b'zzz'" in stderr
    assert "Traceback" not in stderr


def test_a_delivery_worker_delivers_what_it_is_told_of(tmp_path: Path):
    config = build_config(tmp_path / "data", worker=True)

    async def store() -> str:
        spool = EmbeddedSpool(config.data_dir)
        await spool.open()
        try:
            return (await put(spool, envelope(f"alice@{EXAMPLE}"))).queue_id
        finally:
            await spool.close()

    queue_id = asyncio.run(store())
    mail_log = config.data_dir / "mail.log"
    proc = start_child("mailwright.runtime.worker", control.config_frame(config))
    assert proc.stdin is not None
    try:
        proc.stdin.write(b"not a message\n" + control.encode_stream([control.Queued(queue_id)]))
        proc.stdin.flush()
        assert wait_until(
            lambda: mail_log.exists() and f"{queue_id}: delivered" in mail_log.read_text(), WAIT
        )
        assert not lock_is_free(config.data_dir / "spool")  # the worker runs the queue
        proc.stdin.write(control.encode_stream([control.Stop()]))
        proc.stdin.flush()
        assert proc.wait(timeout=WAIT) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert lock_is_free(config.data_dir / "spool")
    assert proc.stderr is not None
    stderr = proc.stderr.read().decode()
    assert "control pipe: unknown message b'not a message'" in stderr
    assert "Traceback" not in stderr


@pytest.mark.parametrize(
    ("module", "args", "usage"),
    [
        ("mailwright.runtime.worker", [], "<server pid>"),
        ("mailwright.runtime.sessions", ["x", "y"], "<server pid> <control fd>"),
    ],
)
def test_a_child_started_wrongly_says_how_in_one_line(module: str, args: list[str], usage: str):
    result = subprocess.run(
        [sys.executable, "-m", module, *args], capture_output=True, text=True, timeout=WAIT
    )
    assert result.returncode == 1
    assert result.stderr.endswith(f"usage: python -m {module} {usage}\n")
    assert result.stderr.count("\n") == 1
