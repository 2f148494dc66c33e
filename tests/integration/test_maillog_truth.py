"""The mail log tells the truth (issue 8, item 9): lines of one queue id in the order
the events happened, and a deferral names the real next attempt.

Ordering runs ``mailwright serve`` in every process mode (delivery worker on/off x
session processes 0/2) with a buffered log (each process flushes its own buffer on its
own clock, every ``log.flush_interval``), sends a burst of ``BURST`` messages from
``CLIENTS`` parallel clients, then ``PACED`` messages one at a time, each once the one
before is delivered: a burst is accepted within one flush interval (one chance for
the buffers to race), paced messages give the race a new chance each.  The file is
read after a graceful stop.
"""

from __future__ import annotations

import re
import sqlite3
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from pathlib import Path

import pytest

from helpers.procs import wait_until
from helpers.servers import EXAMPLE, SubprocessServer
from helpers.wire import message, queue_id_of, smtplib_client

SENDER = "sender@remote.test"
BURST = 16
CLIENTS = 8
PACED = 24
MESSAGES = BURST + PACED
# Every message of a run is delivered within this (the worker runs at idle priority).
DRAIN_TIMEOUT = 30.0
# Longer than a delivery takes (tens of ms), so buffers of the old code raced often.
BUFFERED_LOG = {"mail_log": "mail.log", "flush_interval": 1.0}
LINE_RE = re.compile(r"^\S+ ([0-9A-Z]{16}): (\w+) ", re.MULTILINE)
DEFERRED_RE = re.compile(r"^(\S+) ([0-9A-Z]{16}): deferred .* next=(\S+)$", re.MULTILINE)


def send_one(server: SubprocessServer, number: int) -> str:
    with smtplib_client(server.host, server.port) as client:
        client.ehlo("client.test")
        client.mail(SENDER)
        client.rcpt(f"alice@{EXAMPLE}")
        code, reply = client.data(message(f"order {number}"))
        client.quit()
    assert code == 250, reply
    return queue_id_of(reply)


def send_many(server: SubprocessServer, count: int) -> list[str]:
    with ThreadPoolExecutor(CLIENTS) as pool:
        return list(pool.map(lambda n: send_one(server, n), range(count)))


def delivered_count(server: SubprocessServer) -> int:
    return len(server.message_files(EXAMPLE, "alice"))


def send_paced(server: SubprocessServer, count: int) -> list[str]:
    """``count`` messages, each sent once everything before it is delivered."""
    ids = []
    first = delivered_count(server)
    for number in range(count):
        ids.append(send_one(server, number))
        done = first + number + 1
        assert wait_until(lambda: delivered_count(server) >= done, DRAIN_TIMEOUT)  # noqa: B023
    return ids


def events_by_id(log: str) -> dict[str, list[str]]:
    """queue id -> its events in file order."""
    found: dict[str, list[str]] = {}
    for qid, event in LINE_RE.findall(log):
        found.setdefault(qid, []).append(event)
    return found


@pytest.mark.parametrize("processes", [0, 2], ids=["in-process-sessions", "session-procs"])
@pytest.mark.parametrize("worker", [True, False], ids=["worker", "in-process-runner"])
def test_accepted_line_precedes_delivered_line_in_every_process_mode(
    make_subprocess_server, worker: bool, processes: int
) -> None:
    server: SubprocessServer = make_subprocess_server(
        smtp={"processes": processes},
        extra={"log": BUFFERED_LOG, "delivery": {"worker": worker}},
    )
    ids = send_many(server, BURST)
    assert wait_until(lambda: delivered_count(server) == BURST, DRAIN_TIMEOUT)
    ids += send_paced(server, PACED)
    assert len(set(ids)) == MESSAGES
    assert wait_until(lambda: delivered_count(server) == MESSAGES, DRAIN_TIMEOUT), (
        f"{delivered_count(server)} of {MESSAGES} delivered"
    )
    assert server.terminate() == 0, server.stderr()
    events = events_by_id(server.mail_log())
    wrong = {qid: events.get(qid) for qid in ids if events.get(qid) != ["accepted", "delivered"]}
    assert not wrong, f"{len(wrong)} of {MESSAGES} out of order or missing: {wrong}"


def _parse_ts(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


@pytest.mark.parametrize("worker", [False, True], ids=["runner-in-server", "worker-process"])
def test_deferred_line_names_the_next_attempt_recorded_in_the_spool(
    make_server, worker: bool
) -> None:
    server = make_server(worker=worker)
    # First a delivery, so the runner (a worker starts in the background) is past its
    # start-up, where it creates every Maildir: see test_delivery_worker.py.
    first = send_one(server, 0)
    assert server.message_with_id(EXAMPLE, "alice", first)
    # Alice's Maildir cannot be written: its tmp/ is a file, so the delivery fails
    # with a temporary error (ENOTDIR) and the message is deferred.
    tmp = server.maildir(EXAMPLE, "alice") / "tmp"
    tmp.rmdir()
    tmp.write_bytes(b"")
    qid = send_one(server, 1)
    assert wait_until(lambda: f"{qid}: deferred " in server.mail_log(), DRAIN_TIMEOUT)
    logged_at, _, next_text = next(m for m in DEFERRED_RE.findall(server.mail_log()) if m[1] == qid)

    def recorded() -> tuple[float, int]:
        """(next_attempt, attempts) of the message in the spool."""
        with sqlite3.connect(Path(server.data_dir) / "spool" / "queue.db") as db:
            return db.execute(
                "SELECT next_attempt, attempts FROM messages WHERE queue_id = ?", (qid,)
            ).fetchone()

    # The attempt is recorded (group-committed) just after its line is logged.
    assert wait_until(lambda: recorded()[1] == 1, DRAIN_TIMEOUT), recorded()
    next_attempt = recorded()[0]
    # The log has milliseconds: the spool's time, truncated, exactly.
    assert _parse_ts(next_text) == int(next_attempt * 1000) / 1000
    # retry_initial (60 s) after the attempt, plus up to 10% jitter: not the arrival.
    assert 60.0 <= _parse_ts(next_text) - _parse_ts(logged_at) <= 66.1
