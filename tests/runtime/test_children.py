"""The one child supervisor (``runtime.children.Child``) with small real child processes.

A child that exits is restarted after the first back-off delay and the exit announced;
``stop`` says ``Stop`` on the child's channel — a line then end of file on a pipe, a
datagram on a socket pair — and waits; a child that does not stop in time is killed.
"""

from __future__ import annotations

import asyncio
import signal
import sys
from pathlib import Path

from helpers.servers import build_config
from mailwright.runtime import control
from mailwright.runtime.children import RESTART_DELAYS, Channel, Child, ChildKind

PIPE_KIND = ChildKind("test child", "not.used", Channel.PIPE)
SOCKET_KIND = ChildKind("test child", "not.used", Channel.SOCKET)
WAIT = 15.0  # seconds: far above the first restart delay

# Reads the config frame, then the rest of standard input to its end into a file.
PIPE_CHILD = """
import sys
from mailwright.runtime.control import read_config
read_config()
open(sys.argv[1], "wb").write(sys.stdin.buffer.read())
"""
# Says Ready, then writes the first datagram it gets into a file.
SOCKET_CHILD = """
import socket, sys
from mailwright.runtime.control import read_config
read_config()
sock = socket.socket(fileno=int(sys.argv[3]))
sock.send(b"ready")
open(sys.argv[1], "wb").write(sock.recv(100))
"""


def python(script: str, *args: str) -> list[str]:
    return [sys.executable, "-c", script, *args]


async def until(predicate, timeout: float = WAIT) -> None:
    async with asyncio.timeout(timeout):
        while not predicate():
            await asyncio.sleep(0.02)


def test_an_exited_child_is_restarted_after_the_first_delay(tmp_path: Path):
    announced: list[str] = []

    async def main() -> None:
        child = Child(
            PIPE_KIND,
            build_config(tmp_path),
            announce=announced.append,
            command=python("import sys; sys.exit(3)"),
        )
        await child.start()
        await until(lambda: child.starts == 2)
        await child.stop(timeout=WAIT)

    asyncio.run(main())
    assert announced[0] == (
        f"mailwright: test child exited (status 3), restarting in {RESTART_DELAYS[0]:g} s"
    )


def test_stop_on_a_pipe_is_a_stop_line_then_end_of_file(tmp_path: Path):
    out = tmp_path / "got"

    async def main() -> int | None:
        child = Child(PIPE_KIND, build_config(tmp_path), command=python(PIPE_CHILD, str(out)))
        await child.start()
        await child.stop(timeout=WAIT)
        assert child.starts == 1
        return child.proc.returncode if child.proc else None

    assert asyncio.run(main()) == 0
    assert out.read_bytes() == b"x\n"


def test_a_socket_child_is_read_and_told_to_stop(tmp_path: Path):
    out = tmp_path / "got"
    received: list[control.Message] = []

    def on_readable(child: Child) -> None:
        assert child.control is not None
        data, _fds = control.receive_datagram(child.control)
        received.extend(control.unpack(data, control.TO_MAIN)[0])

    async def main() -> int | None:
        child = Child(
            SOCKET_KIND,
            build_config(tmp_path),
            command=python(SOCKET_CHILD, str(out)),
            on_readable=on_readable,
        )
        await child.start()
        await until(lambda: received == [control.Ready()])
        await child.stop(timeout=WAIT)
        assert child.control is None  # our end is closed once it is gone
        return child.proc.returncode if child.proc else None

    assert asyncio.run(main()) == 0
    assert out.read_bytes() == b"x"


def test_a_child_that_does_not_stop_in_time_is_killed(tmp_path: Path):
    async def main() -> int | None:
        child = Child(
            PIPE_KIND, build_config(tmp_path), command=python("import time; time.sleep(60)")
        )
        await child.start()
        await child.stop(timeout=0.3)
        return child.proc.returncode if child.proc else None

    assert asyncio.run(main()) == -signal.SIGKILL
