"""pytest fixtures over ``helpers.servers`` (imported by ``tests/conftest.py``)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from helpers.servers import InProcessServer, SubprocessServer, build_config

MakeServer = Callable[..., InProcessServer]
MakeSubprocess = Callable[..., SubprocessServer]


@pytest.fixture
def make_server(tmp_path: Path) -> Iterator[MakeServer]:
    """Start an in-process server; keyword arguments go to ``config_dict`` (``smtp=``,
    ``extra=``), except ``prepare``: a function called with the data folder before the
    server starts (e.g. to write ``users.json``).  Every server started here is stopped
    at teardown."""
    started: list[InProcessServer] = []

    def make(*, prepare: Callable[[Path], object] | None = None, **kwargs: Any) -> InProcessServer:
        data_dir = tmp_path / f"data{len(started)}"
        server = InProcessServer(build_config(data_dir, **kwargs))
        started.append(server)
        if prepare is not None:
            data_dir.mkdir(parents=True, exist_ok=True)
            prepare(data_dir)
        return server.start()

    yield make
    for server in reversed(started):  # reverse: each restores the logging it found
        server.stop()


@pytest.fixture
def server(make_server: MakeServer) -> InProcessServer:
    """An in-process server with the default test configuration."""
    return make_server()


@pytest.fixture
def make_subprocess_server(tmp_path: Path) -> Iterator[MakeSubprocess]:
    """Start ``mailwright serve`` in a subprocess; killed at teardown."""
    started: list[SubprocessServer] = []

    def make(**kwargs: Any) -> SubprocessServer:
        workdir = tmp_path / f"proc{len(started)}"
        workdir.mkdir()
        server = SubprocessServer(workdir, **kwargs)
        started.append(server)
        return server.start()

    yield make
    for server in started:
        server.kill()


@pytest.fixture
def subprocess_server(make_subprocess_server: MakeSubprocess) -> SubprocessServer:
    return make_subprocess_server()
