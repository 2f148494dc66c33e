"""Crash safety with a real ``mailwright serve`` process and SIGKILL.

(a) Nothing acknowledged is lost: every message that got 250 is delivered after a
    restart, however soon after the 250 the server was killed (delivery may or may not
    have happened before the kill; both must end with the message in the Maildir).
    The guarantee is at-least-once (RFC 5321 §6.1 prefers a duplicate to a loss), so
    the tests require >= 1 copy of each queue id and *report* duplicates as warnings.
(b) Nothing unacknowledged survives: a server killed while a client is in the middle
    of DATA comes back with no message, an empty ``spool/tmp`` and no orphan body in
    ``spool/msg``.
"""

from __future__ import annotations

import re
import threading
import time
import warnings
from collections import Counter

from helpers.procs import wait_until
from helpers.servers import EXAMPLE, SubprocessServer
from helpers.wire import RawSMTP, message, queue_id_of, smtplib_client
from mailwright.smtp import codes

SENDER = "sender@remote.test"
RECEIVED_ID = re.compile(rb"\) with E?SMTP id ([0-9A-Z]{16})")


def delivered_ids(server: SubprocessServer, box: str) -> Counter[str]:
    """Queue ids (from our Received header) of the messages now in ``box``."""
    ids: Counter[str] = Counter()
    for path in server.message_files(EXAMPLE, box):
        match = RECEIVED_ID.search(path.read_bytes())
        assert match, path
        ids[match.group(1).decode()] += 1
    return ids


def wait_delivered(
    server: SubprocessServer, box: str, acked: list[str], timeout: float = 10
) -> Counter[str]:
    """Wait (bounded) until every id in ``acked`` is in ``box``; copies are not counted
    towards that, since a duplicate of one message must not hide the loss of another."""
    deadline = time.monotonic() + timeout
    while True:
        ids = delivered_ids(server, box)
        if set(acked) <= set(ids) or time.monotonic() >= deadline:
            break
        time.sleep(0.05)
    # Once the queue is empty nothing can be redelivered: duplicates are all in.
    server.wait_queue_empty()
    return delivered_ids(server, box)


def assert_all_delivered(server: SubprocessServer, box: str, acked: list[str]) -> None:
    ids = wait_delivered(server, box, acked)
    missing = [qid for qid in acked if ids[qid] == 0]
    assert not missing, f"acknowledged with 250 but never delivered: {missing}"
    assert set(ids) == set(acked), f"delivered but never acknowledged: {set(ids) - set(acked)}"
    duplicates = {qid: n for qid, n in ids.items() if n > 1}
    if duplicates:
        warnings.warn(
            f"at-least-once: duplicate deliveries after SIGKILL: {duplicates}", stacklevel=2
        )


def send_one(server: SubprocessServer, subject: str, rcpt: str = "alice@example.test") -> str:
    with smtplib_client(server.host, server.port) as client:
        client.ehlo()
        client.mail(SENDER)
        client.rcpt(rcpt)
        code, text = client.data(message(subject))
        assert code == 250, text
        return queue_id_of(text)


def test_sigkill_right_after_each_250_loses_nothing(make_subprocess_server):
    server = make_subprocess_server()
    acked = []
    for i in range(6):
        if i:
            server.start()
        acked.append(send_one(server, f"crash-{i}"))
        server.kill()  # the instant the 250 is in: delivery may not have started
    server.start()
    assert_all_delivered(server, "alice", acked)
    # Once delivered, the messages leave the queue (assert_all_delivered waited for it).
    assert server.queue_rows() == 0
    assert wait_until(lambda: not server.spool_files()["msg"], 5)
    assert server.spool_files() == {"tmp": [], "msg": []}


def test_sigkill_during_a_burst_loses_no_acknowledged_message(make_subprocess_server):
    """20 messages over 4 concurrent pipelined sessions; kill -9 as the 20th 250 lands,
    while earlier ones are being delivered and later ones are being committed."""
    server = make_subprocess_server()
    sessions, per_session = 4, 5
    acked: list[str] = []
    lock = threading.Lock()
    errors: list[BaseException] = []

    def session(n: int) -> None:
        try:
            with RawSMTP(server.host, server.port) as raw:
                raw.greeting()
                raw.ehlo()
                for i in range(per_session):
                    raw.send(
                        f"MAIL FROM:<{SENDER}>\r\nRCPT TO:<bob@example.test>\r\nDATA\r\n".encode()
                    )
                    assert raw.replies(3)[-1].matches(codes.R354_START_DATA)
                    raw.send(message(f"burst-{n}-{i}") + b".\r\n")
                    reply = raw.reply()
                    assert reply.code == 250, reply
                    with lock:
                        acked.append(queue_id_of(reply.text))
                        if len(acked) == sessions * per_session:
                            server.kill()
        except BaseException as exc:  # reported below, in the test's thread
            errors.append(exc)

    threads = [threading.Thread(target=session, args=(n,)) for n in range(sessions)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert not errors, errors
    assert len(acked) == sessions * per_session
    assert server.proc is not None and server.proc.returncode == -9
    server.start()
    assert_all_delivered(server, "bob", acked)


def test_sigkill_in_the_middle_of_data_leaves_nothing_behind(make_subprocess_server):
    server = make_subprocess_server()
    with RawSMTP(server.host, server.port) as raw:
        raw.greeting()
        raw.ehlo()
        raw.send(f"MAIL FROM:<{SENDER}>\r\nRCPT TO:<alice@example.test>\r\nDATA\r\n".encode())
        assert raw.replies(3)[-1].matches(codes.R354_START_DATA)
        raw.send(b"Subject: half\r\n\r\n" + b"half of the body\r\n" * 2000)
        # Wait (bounded) until the temporary body exists, so the kill leaves debris.
        deadline = time.monotonic() + 5
        while not server.spool_files()["tmp"] and time.monotonic() < deadline:
            time.sleep(0.01)
        assert server.spool_files()["tmp"], "no temporary body while in DATA"
        server.kill()
        assert raw.closed_by_peer()
    server.start()
    # A marker: the restarted server takes a message and delivers it, and then the
    # queue is empty.  Had the half-sent message survived, it would have been in the
    # queue until delivered, so it would be in a Maildir now.
    queue_id = send_one(server, "after-crash")
    assert wait_delivered(server, "alice", [queue_id]) == Counter({queue_id: 1})
    assert len(server.all_mail_files()) == 1
    assert wait_until(lambda: server.spool_files() == {"tmp": [], "msg": []}, 5)
