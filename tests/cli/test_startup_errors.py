"""``mailwright serve`` that cannot start: exactly one line on stderr per problem,
``mailwright: cannot start: <thing>: <problem>``, exit status 2, never a traceback.

Every case runs the real command in a subprocess, as an operator would.  The suite
runs as root, which no permission bit stops; the "not writable" case therefore uses
what root really cannot give away: a ``[process] user = "nobody"`` server whose
data_dir lies inside a root-owned 0700 directory (after the privilege drop nobody
could not even reach it).
"""

from __future__ import annotations

import asyncio
import logging
import os
import pwd
import shutil
import socket
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from helpers.servers import build_config, to_toml
from mailwright.runtime import sessionpool
from mailwright.runtime.server import App
from mailwright.runtime.startup import StartupError

EXIT_CONFIG = 2
DOMAIN = {"name": "example.test", "mailboxes": ["postmaster"]}


def serve(config: Path, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "mailwright", "serve", "-c", str(config)],
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
    )


def write_config(tmp_path: Path, **doc: Any) -> Path:
    doc = {
        "data_dir": str(tmp_path / "data"),
        "listener": [{"address": "127.0.0.1", "port": 0}],
        "domain": [DOMAIN],
        "log": {"mail_log": "mail.log"},
        **doc,
    }
    path = tmp_path / "mailwright.toml"
    path.write_text(to_toml(doc), "utf-8")
    return path


def cannot_start(done: subprocess.CompletedProcess[str]) -> str:
    """The one stderr line, without the prefix, of a serve that exited 2."""
    assert done.returncode == EXIT_CONFIG, done
    assert "Traceback" not in done.stderr
    [line] = done.stderr.splitlines()
    assert line.startswith("mailwright: cannot start: "), line
    assert "data in" not in done.stdout  # the "fully started" line never came
    return line.removeprefix("mailwright: cannot start: ")


@pytest.fixture
def open_tmp() -> Iterator[Path]:
    """A folder every user may enter (pytest's own tmp_path is inside a 0700 one)."""
    path = Path(tempfile.mkdtemp(prefix="mailwright-test-"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path)


def test_port_in_use_names_the_listener(tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        config = write_config(tmp_path, listener=[{"address": "127.0.0.1", "port": port}])
        done = serve(config)
    assert cannot_start(done) == f"listener inbound 127.0.0.1:{port}: address already in use"


def test_port_in_use_after_another_listener_bound_releases_it(tmp_path: Path) -> None:
    """The failure undoes what was started: the first listener's port is free again."""
    with socket.socket() as free, socket.socket() as busy:
        free.bind(("127.0.0.1", 0))
        first = free.getsockname()[1]
        free.close()
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        listeners = [
            {"address": "127.0.0.1", "port": first},
            {"address": "127.0.0.1", "port": port, "role": "submission"},
        ]
        done = serve(write_config(tmp_path, listener=listeners))
    assert cannot_start(done) == f"listener submission 127.0.0.1:{port}: address already in use"
    with socket.socket() as again:
        again.bind(("127.0.0.1", first))  # would raise EADDRINUSE if still held


def test_data_dir_that_is_a_file(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.write_text("not a folder\n")
    assert cannot_start(serve(write_config(tmp_path))) == f"data_dir {data} is not a directory"


@pytest.mark.skipif(os.geteuid() != 0, reason="the privilege drop needs root")
def test_data_dir_not_writable_by_the_process_user(tmp_path: Path, open_tmp: Path) -> None:
    private = open_tmp / "private"
    private.mkdir(mode=0o700)
    data = private / "data"
    config = write_config(
        tmp_path,
        data_dir=str(data),
        process={"user": "nobody"},
        delivery={"worker": False},  # no child to spawn as nobody: only data_dir counts
    )
    assert cannot_start(serve(config)) == (
        f"data_dir {data} is not writable by user nobody: {private} does not let nobody in"
    )
    assert not data.exists()  # checked before anything was created


# /proc/sys refuses new entries even to root (the kernel, not a permission bit).
UNWRITABLE_PARENT = Path("/proc/sys")


@pytest.mark.skipif(
    os.access(UNWRITABLE_PARENT, os.W_OK), reason="/proc/sys is writable on this system"
)
def test_data_dir_not_writable_by_the_user_the_server_runs_as(tmp_path: Path) -> None:
    data = UNWRITABLE_PARENT / "mailwright-test-data"
    user = pwd.getpwuid(os.geteuid()).pw_name
    config = write_config(tmp_path, data_dir=str(data))
    assert cannot_start(serve(config)) == f"data_dir {data} is not writable by user {user}"


def test_missing_certificate(tmp_path: Path) -> None:
    cert = tmp_path / "missing.pem"
    config = write_config(tmp_path, tls={"certificates": [{"cert": str(cert), "key": str(cert)}]})
    assert cannot_start(serve(config)) == (
        f"tls: {cert}: cannot read certificate file: No such file or directory"
    )


def test_unknown_process_user(tmp_path: Path) -> None:
    config = write_config(tmp_path, process={"user": "no-such-mail-user"})
    assert cannot_start(serve(config)) == "process: unknown user 'no-such-mail-user' (process.user)"


def test_unreadable_users_file(tmp_path: Path) -> None:
    users = tmp_path / "data" / "users.json"
    users.mkdir(parents=True)  # a directory where the file should be
    assert cannot_start(serve(write_config(tmp_path))) == (
        f"users file: cannot read {users}: Is a directory"
    )


def _nobody_can_run_python() -> bool:
    """An independent probe: exec this interpreter as nobody."""
    try:
        subprocess.run([sys.executable, "-c", "pass"], user="nobody", timeout=30, check=True)
    except (OSError, subprocess.CalledProcessError):
        return False
    return True


@pytest.mark.skipif(os.geteuid() != 0, reason="the privilege drop needs root")
def test_interpreter_not_runnable_by_the_process_user(tmp_path: Path, open_tmp: Path) -> None:
    """The delivery worker is spawned after the drop: found before binding, not after."""
    if _nobody_can_run_python():
        pytest.skip("this interpreter is runnable by nobody here")
    data = open_tmp / "data"
    config = write_config(tmp_path, data_dir=str(data), process={"user": "nobody"})
    line = cannot_start(serve(config))
    assert line.startswith(f"python {sys.executable} cannot be run by user nobody ("), line
    assert line.endswith("), which runs the delivery worker and session processes")
    assert not data.exists()


@pytest.fixture
def restore_logging() -> Iterator[None]:
    """App.start configures the global "mailwright" logger (obs.debuglog): put it back,
    as helpers.servers.InProcessServer does, so no later test inherits our handler."""
    logger = logging.getLogger("mailwright")
    handlers, propagate, level = list(logger.handlers), logger.propagate, logger.level
    yield
    logger.handlers[:] = handlers
    logger.propagate = propagate
    logger.setLevel(level)


def test_session_process_that_cannot_start_undoes_the_start(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, restore_logging: None
) -> None:
    """In-process: the start fails with one "session processes: ..." problem, and what
    was started before it is undone, the in-process queue runner included (it kept
    scanning a closed spool)."""
    monkeypatch.setattr(sessionpool, "SESSION_MODULE", "mailwright_no_such_module")
    config = build_config(tmp_path / "data", smtp={"processes": 1})
    app = App(config, announce=lambda line: None)

    async def start() -> None:
        with pytest.raises(StartupError) as info:
            await app.start()
        [problem] = info.value.problems
        assert problem.startswith("session processes: session process 0 exited with status 1")
        # Nothing the start began is left running on the loop (the runner included).
        left = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        assert left == [], left

    asyncio.run(start())
