from __future__ import annotations

from collections.abc import Iterator

import pytest

from helpers.secure import secure_extra, write_users
from helpers.servers import InProcessServer, build_config


@pytest.fixture(scope="module")
def mw(tmp_path_factory: pytest.TempPathFactory) -> Iterator[InProcessServer]:
    """One in-process server per module: every role (inbound, submission with
    STARTTLS, submissions with implicit TLS), alice and bob as AUTH users."""
    data_dir = tmp_path_factory.mktemp("send")
    data_dir.mkdir(parents=True, exist_ok=True)
    write_users(data_dir)
    server = InProcessServer(build_config(data_dir, extra=secure_extra())).start()
    try:
        yield server
    finally:
        server.stop()
