"""The mail log tells the truth (issue 8, item 9): a deferral names the real next
attempt.
"""

from __future__ import annotations

import re
import sqlite3
from datetime import datetime
from pathlib import Path

from helpers.procs import wait_until
from helpers.servers import EXAMPLE, SubprocessServer
from helpers.wire import message, queue_id_of, smtplib_client

SENDER = "sender@remote.test"
# Every message of a run is delivered within this (the worker runs at idle priority).
DRAIN_TIMEOUT = 30.0
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


def _parse_ts(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def test_deferred_line_names_the_next_attempt_recorded_in_the_spool(make_server) -> None:
    server = make_server()
    # Alice's Maildir cannot be written: its tmp/ is a file, so the delivery fails
    # with a temporary error (ENOTDIR) and the message is deferred.
    tmp = server.maildir(EXAMPLE, "alice") / "tmp"
    tmp.rmdir()
    tmp.write_bytes(b"")
    qid = send_one(server, 0)
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
