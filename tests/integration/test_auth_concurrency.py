"""AUTH under parallel load, with Python's smtplib over STARTTLS as the client (issue 8,
items 8 and 13).

* Correct credentials never lead to a failure, a tarpit delay or a ban: smtplib tries
  CRAM-MD5 first whenever it is offered (it is, once one user opted in), and a login
  without a CRAM-MD5 secret gets 534 5.7.9 at once, uncounted, before smtplib falls
  back to PLAIN.  Twenty parallel correct logins from one address all succeed, in
  process and with two session processes.

Every server here runs with the production brute-force settings that matter (a
tarpit of 1 s on the first failure, a ban at the fifth), so a failure counted by
mistake shows up as a delay or a ban.
"""

from __future__ import annotations

import smtplib
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from helpers.secure import ALICE, BOB, PASSWORD, client_context, secure_extra, write_users
from helpers.servers import HOST, SubprocessServer
from helpers.wire import CLIENT_NAME

# The production defaults of abuse.auth_* (config.AbuseConfig).
PRODUCTION_AUTH = {"auth_max_failures": 5, "auth_base_delay": 1.0, "auth_max_delay": 8.0}
PARALLEL_LOGINS = 20
# A login that took no failed attempt first: far under the 1 s tarpit of a failure.
QUICK_LOGIN = 0.5
SMTP_TIMEOUT = 30.0


@pytest.fixture
def start_server(make_server: Callable[..., Any], tmp_path: Path) -> Iterator[Callable[..., Any]]:
    """In process (``processes=0``) or ``mailwright serve`` with N session processes;
    alice and bob (bob opted in to CRAM-MD5) exist before the start."""
    started: list[SubprocessServer] = []

    def start(
        *,
        processes: int = 0,
        abuse: dict[str, Any] | None = None,
        smtp: dict[str, Any] | None = None,
        prepare: Callable[[Path], object] = write_users,
    ) -> Any:
        extra = secure_extra(abuse={**PRODUCTION_AUTH, **(abuse or {})})
        if not processes:
            return make_server(smtp=smtp, extra=extra, prepare=prepare)
        workdir = tmp_path / f"proc{len(started)}"
        workdir.mkdir()
        server = SubprocessServer(
            workdir, smtp={"processes": processes, **(smtp or {})}, extra=extra
        )
        started.append(server)
        server.data_dir.mkdir(parents=True)
        prepare(server.data_dir)
        return server.start()

    yield start
    for server in started:
        server.kill()


def tls_client(server: Any, source: str = HOST) -> smtplib.SMTP:
    """smtplib on the submission port from ``source``: EHLO, STARTTLS, EHLO."""
    client = smtplib.SMTP(
        HOST,
        server.ports["submission"],
        local_hostname=CLIENT_NAME,
        timeout=SMTP_TIMEOUT,
        source_address=(source, 0),
    )
    try:
        client.starttls(context=client_context())
        client.ehlo()
    except BaseException:
        client.close()
        raise
    return client


def timed_login(
    server: Any, user: str, start: threading.Barrier | None = None
) -> tuple[int, float]:
    """One smtplib ``login()`` (its own mechanism choice); (reply code, seconds)."""
    with tls_client(server) as client:
        if start is not None:
            start.wait(SMTP_TIMEOUT)
        began = time.monotonic()
        code, _ = client.login(user, PASSWORD)
        return code, time.monotonic() - began


# -- item 8: correct passwords are never failures --------------------------------------


@pytest.mark.parametrize("processes", [0, 2])
def test_smtplib_login_is_not_a_failure_when_cram_md5_is_offered(start_server, processes):
    """bob has a CRAM-MD5 secret, so CRAM-MD5 is offered and smtplib tries it first for
    alice too: 534 at once, then PLAIN, 235, quickly; nothing counted as a failure."""
    server = start_server(processes=processes)
    with tls_client(server) as client:
        assert "CRAM-MD5" in client.esmtp_features["auth"].split()
    for user in (ALICE, BOB):
        code, took = timed_login(server, user)
        assert code == 235
        assert took < QUICK_LOGIN, f"{user}: login took {took:.2f}s (a failure's tarpit?)"
    log = server.mail_log()
    assert "534 5.7.9" in log  # alice's CRAM-MD5 attempt, answered as too weak ...
    assert "AUTH failed" not in log, log  # ... and never as a failure


@pytest.mark.parametrize("processes", [0, 2])
def test_parallel_correct_logins_all_succeed_and_ban_nobody(start_server, processes):
    """Twenty parallel smtplib logins with the right password from one address (it was:
    all ``454 4.7.0 Too many authentication failures``, the address banned)."""
    server = start_server(processes=processes, smtp={"max_connections_per_ip": 100})
    start = threading.Barrier(PARALLEL_LOGINS)
    with ThreadPoolExecutor(PARALLEL_LOGINS) as pool:
        # alice (no CRAM-MD5 secret): the user whose logins smtplib starts with CRAM-MD5.
        results = list(
            pool.map(lambda _: timed_login(server, ALICE, start), range(PARALLEL_LOGINS))
        )
    assert [code for code, _ in results] == [235] * PARALLEL_LOGINS
    code, took = timed_login(server, ALICE)  # and afterwards: not banned, no delay
    assert code == 235 and took < QUICK_LOGIN
    log = server.mail_log()
    assert "AUTH failed" not in log and "banned" not in log, log
