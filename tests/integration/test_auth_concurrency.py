"""AUTH under parallel load, with Python's smtplib over STARTTLS as the client (issue 8,
items 8 and 13).

* Correct credentials never lead to a failure, a tarpit delay or a ban: smtplib tries
  CRAM-MD5 first whenever it is offered (it is, once one user opted in), and a login
  without a CRAM-MD5 secret gets 534 5.7.9 at once, uncounted, before smtplib falls
  back to PLAIN.  Twenty parallel correct logins from one address all succeed, in
  process and with two session processes.

* Parallel wrong passwords cannot outrun the ban, and a burst cannot hold up others
  (``net.authqueue``): of fifty parallel wrong AUTH PLAIN from one address at most
  ``max_failures + PER_ADDRESS_CHECKS`` are checked, the rest get 454 4.7.0 unchecked;
  during two hundred wrong ones from ten addresses a correct login from an eleventh
  completes in well under ``CLEAN_LOGIN_BOUND``.  Those tests hash with the production
  argon2 parameters, so checks cost what they cost in production (~0.1 s each).  Fifty
  SCRAM proofs sent at once after the exchanges began: exactly the limit is checked.

Every server here runs with the production brute-force settings that matter (a
tarpit of 1 s on the first failure, a ban at the fifth), so a failure counted by
mistake shows up as a delay or a ban.
"""

from __future__ import annotations

import base64
import smtplib
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

import pytest
from argon2 import PasswordHasher
from scramp import ScramClient

from helpers.secure import (
    ALICE,
    BOB,
    PASSWORD,
    SCRAM_ITERATIONS,
    WRONG_PASSWORD,
    b64,
    client_context,
    fast_store,
    plain_blob,
    secure_extra,
    write_users,
)
from helpers.servers import HOST, SubprocessServer
from helpers.wire import CLIENT_NAME
from mailwright.accounts.users import UserStore
from mailwright.net.authqueue import PER_ADDRESS_CHECKS

T = TypeVar("T")

# The production defaults of abuse.auth_* (config.AbuseConfig).
PRODUCTION_AUTH = {"auth_max_failures": 5, "auth_base_delay": 1.0, "auth_max_delay": 8.0}
PARALLEL_LOGINS = 20
# A login that took no failed attempt first: far under the 1 s tarpit of a failure.
QUICK_LOGIN = 0.5
SMTP_TIMEOUT = 30.0
# Parallel guessing: sessions from one address; addresses x sessions in the burst.
GUESSES = 50
BURST_ADDRESSES, BURST = 10, 200
# A correct login from a clean address during the burst (0.13 s idle; it took 20.8 s).
CLEAN_LOGIN_BOUND = 2.0
MANY_CONNECTIONS = {"max_connections": 500, "max_connections_per_ip": 100}
# Short tarpits: the burst tests wait for every reply.
SHORT_TARPIT = {"auth_base_delay": 0.1, "auth_max_delay": 0.2}


def write_users_production_hash(data_dir: Path) -> None:
    """alice with argon2's default (production) parameters."""
    UserStore.in_data_dir(data_dir, hasher=PasswordHasher(), scram_iterations=SCRAM_ITERATIONS).add(
        ALICE, PASSWORD
    )


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


def open_clients(server: Any, sources: list[str]) -> list[smtplib.SMTP]:
    """One TLS session per source address, opened one after another: these tests are
    about AUTH, and many STARTTLS handshakes at once currently lose the EHLO that
    follows some of them (a server issue outside AUTH, reported separately)."""
    clients: list[smtplib.SMTP] = []
    try:
        for source in sources:
            clients.append(tls_client(server, source))
    except BaseException:
        close_all(clients)
        raise
    return clients


def close_all(clients: list[smtplib.SMTP]) -> None:
    for client in clients:
        client.close()


def together(work: Callable[[smtplib.SMTP], T], clients: list[smtplib.SMTP]) -> list[Future[T]]:
    """``work(client)`` for every client, each on its own thread, released at once;
    returns without waiting for the results."""
    ready = threading.Barrier(len(clients) + 1)

    def run(client: smtplib.SMTP) -> T:
        ready.wait(SMTP_TIMEOUT)
        return work(client)

    pool = ThreadPoolExecutor(len(clients))
    futures = [pool.submit(run, client) for client in clients]
    pool.shutdown(wait=False)
    ready.wait(SMTP_TIMEOUT)
    return futures


def timed_login(client: smtplib.SMTP, user: str = ALICE) -> tuple[int, float]:
    """One smtplib ``login()`` (its own mechanism choice); (reply code, seconds)."""
    began = time.monotonic()
    code, _ = client.login(user, PASSWORD)
    return code, time.monotonic() - began


def auth_plain(client: smtplib.SMTP, password: str) -> tuple[int, str]:
    """AUTH PLAIN as alice; (code, enhanced status code)."""
    code, text = client.docmd("AUTH", f"PLAIN {b64(plain_blob(ALICE, password))}")
    return code, text.decode().split(" ", 1)[0]


def guess(client: smtplib.SMTP) -> tuple[int, str]:
    return auth_plain(client, WRONG_PASSWORD)


def wait_until_each_failed(server: Any, addresses: set[str]) -> None:
    """Poll the mail log (bounded) until each address has an ``AUTH failed`` line."""
    deadline = time.monotonic() + SMTP_TIMEOUT
    while True:
        failed = {
            line.split("client=", 1)[1].split(" ", 1)[0]
            for line in server.mail_log().splitlines()
            if "AUTH failed for" in line
        }
        if addresses <= failed:
            return
        assert time.monotonic() < deadline, f"no AUTH failure from {addresses - failed}"
        time.sleep(0.02)


# -- item 8: correct passwords are never failures --------------------------------------


@pytest.mark.parametrize("processes", [0, 2])
def test_smtplib_login_is_not_a_failure_when_cram_md5_is_offered(start_server, processes):
    """bob has a CRAM-MD5 secret, so CRAM-MD5 is offered and smtplib tries it first for
    alice too: 534 at once, then PLAIN, 235, quickly; nothing counted as a failure."""
    server = start_server(processes=processes)
    with tls_client(server) as client:
        assert "CRAM-MD5" in client.esmtp_features["auth"].split()
    for user in (ALICE, BOB):
        with tls_client(server) as client:
            code, took = timed_login(client, user)
        assert code == 235
        assert took < QUICK_LOGIN, f"{user}: login took {took:.2f}s (a failure's tarpit?)"
    log = server.mail_log()
    assert "534 5.7.9" in log  # alice's CRAM-MD5 attempt, answered as too weak ...
    assert "AUTH failed" not in log, log  # ... and never as a failure


@pytest.mark.parametrize("processes", [0, 2])
def test_parallel_correct_logins_all_succeed_and_ban_nobody(start_server, processes):
    """Twenty parallel smtplib logins with the right password from one address (it was:
    all ``454 4.7.0 Too many authentication failures``, the address banned)."""
    server = start_server(processes=processes, smtp=MANY_CONNECTIONS)
    clients = open_clients(server, [HOST] * PARALLEL_LOGINS)
    try:
        # alice (no CRAM-MD5 secret): the user whose logins smtplib starts with CRAM-MD5.
        results = [f.result(SMTP_TIMEOUT) for f in together(timed_login, clients)]
    finally:
        close_all(clients)
    assert [code for code, _ in results] == [235] * PARALLEL_LOGINS
    with tls_client(server) as client:  # and afterwards: not banned, no delay
        code, took = timed_login(client)
    assert code == 235 and took < QUICK_LOGIN
    log = server.mail_log()
    assert "AUTH failed" not in log and "banned" not in log, log


# -- item 13: parallel guesses, bounded and fair ---------------------------------------


@pytest.mark.parametrize("processes", [0, 2])
def test_parallel_wrong_passwords_cannot_outrun_the_ban(start_server, processes):
    """Fifty parallel wrong AUTH PLAIN from one address: at most the failure limit plus
    the per-address concurrency are checked (all fifty were); the rest are 454 4.7.0,
    unchecked.  With N session processes each has its own queue (net.authqueue)."""
    limit = PRODUCTION_AUTH["auth_max_failures"]
    server = start_server(
        processes=processes,
        abuse=SHORT_TARPIT,
        smtp=MANY_CONNECTIONS,
        prepare=write_users_production_hash,
    )
    clients = open_clients(server, [HOST] * GUESSES)
    try:
        replies = [f.result(SMTP_TIMEOUT) for f in together(guess, clients)]
    finally:
        close_all(clients)
    checked = replies.count((535, "5.7.8"))
    assert checked + replies.count((454, "4.7.0")) == GUESSES, replies
    assert 1 <= checked <= max(processes, 1) * (limit + PER_ADDRESS_CHECKS), replies
    log = server.mail_log()
    assert log.count("AUTH failed for alice@example.test") == checked, log


def test_correct_login_is_not_stuck_behind_a_burst_from_other_addresses(start_server):
    """Two hundred parallel wrong AUTH PLAIN from ten addresses (127.0.0.2-11); once
    each has failed (so it is known as a guesser) and while most of the burst still
    waits, alice logs in from 127.0.0.12 within CLEAN_LOGIN_BOUND."""
    server = start_server(
        abuse=SHORT_TARPIT, smtp=MANY_CONNECTIONS, prepare=write_users_production_hash
    )
    sources = [f"127.0.0.{2 + i % BURST_ADDRESSES}" for i in range(BURST)]
    clients = open_clients(server, sources)
    try:
        with tls_client(server, "127.0.0.12") as clean:
            burst = together(guess, clients)
            wait_until_each_failed(server, set(sources))  # the burst is on
            began = time.monotonic()
            assert auth_plain(clean, PASSWORD) == (235, "2.7.0")
            took = time.monotonic() - began
            replies = [f.result(SMTP_TIMEOUT * 2) for f in burst]
    finally:
        close_all(clients)
    assert took < CLEAN_LOGIN_BOUND, f"the clean login took {took:.2f}s"
    assert set(replies) <= {(535, "5.7.8"), (454, "4.7.0")}, replies
    limit = PRODUCTION_AUTH["auth_max_failures"]
    assert replies.count((535, "5.7.8")) <= BURST_ADDRESSES * (limit + PER_ADDRESS_CHECKS)


def test_parallel_wrong_scram_proofs_cannot_outrun_the_ban(start_server):
    """Fifty SCRAM-SHA-256 exchanges from one address, each up to its proof, then all
    proofs at once: the first ``auth_max_failures`` are checked and fail, the rest
    arrive after the ban and are refused 454 4.7.0 unchecked (they were all checked:
    the ban was only looked at when an exchange began)."""
    limit = PRODUCTION_AUTH["auth_max_failures"]
    server = start_server(abuse=SHORT_TARPIT, smtp=MANY_CONNECTIONS, prepare=write_alice)
    clients = open_clients(server, [HOST] * GUESSES)
    try:
        scram = {}
        for client in clients:
            scram[client] = ScramClient(["SCRAM-SHA-256"], ALICE, WRONG_PASSWORD)
            first = b64(scram[client].get_client_first())
            code, server_first = client.docmd("AUTH", f"SCRAM-SHA-256 {first}")
            assert code == 334, server_first
            scram[client].set_server_first(base64.b64decode(server_first).decode())

        def prove(client: smtplib.SMTP) -> tuple[int, str]:
            code, text = client.docmd(b64(scram[client].get_client_final()))
            return code, text.decode().split(" ", 1)[0]

        replies = [f.result(SMTP_TIMEOUT) for f in together(prove, clients)]
    finally:
        close_all(clients)
    assert replies.count((535, "5.7.8")) == limit, replies
    assert replies.count((454, "4.7.0")) == GUESSES - limit, replies


def write_alice(data_dir: Path) -> None:
    fast_store(data_dir).add(ALICE, PASSWORD)
