"""``mailwright queue ...`` end to end: every command as a subprocess on a real spool.

The queue is filled through the ``SpoolStore`` API (the only way to get messages in
every state without waiting days: deferred with a reply, partly delivered, bounced,
expired, held, leased), then looked at and changed by the command, and the result
checked through the store again.  ``--json`` output is parsed back with
``json.loads``, one object per line.  The hold test runs a real ``mailwright serve``:
a held message is not delivered while a later marker message is, and is delivered
once released.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from helpers.servers import EXAMPLE, SubprocessServer, config_dict, to_toml
from helpers.spoolkit import BODY, envelope
from mailwright.queue.retry import EXPIRED_STATUS
from mailwright.spool.embedded import EmbeddedSpool
from mailwright.spool.model import Attempt, RecipientStatus, RemoteReply

BUSY = RemoteReply(451, "4.2.0", "Mailbox busy")
UNKNOWN = RemoteReply(550, "5.1.1", "User unknown")
EXPIRED = RemoteReply(451, EXPIRED_STATUS, "Message expired after 5 days in queue")
OK = RemoteReply(250, "2.0.0", "Ok")


def mw(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "mailwright", "queue", *args, "-c", str(config)],
        capture_output=True,
        text=True,
        timeout=60,
    )


def ok(config: Path, *args: str) -> str:
    done = mw(config, *args)
    assert done.returncode == 0, done
    return done.stdout


def json_lines(config: Path, *args: str) -> list[dict[str, object]]:
    return [json.loads(line) for line in ok(config, "list", "--json", *args).splitlines()]


def one_line_error(done: subprocess.CompletedProcess[str], status: int) -> str:
    assert done.returncode == status, done
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("mailwright: queue: "), done.stderr
    return lines[0]


@pytest.fixture
def config(tmp_path: Path) -> Path:
    path = tmp_path / "cfg.toml"
    path.write_text(to_toml(config_dict(tmp_path / "data")), "utf-8")
    return path


@dataclass
class Queue:
    fresh: str  # alice@example.com -> bob@example.net, never tried
    mixed: str  # carol@example.org -> delivered, deferred, bounced, expired
    held: str  # <> -> alice@example.com, held


def data_dir(config: Path) -> Path:
    return config.parent / "data"


async def _fill(data: Path) -> Queue:
    # Each message a millisecond after the one before: queue ids sort by arrival only
    # to the millisecond (``spool.queueid``), and the listing is in arrival order.
    start = time.time()
    ticks = iter(range(1_000_000))
    store = EmbeddedSpool(data, clock=lambda: start + next(ticks) / 1000)
    await store.open()
    try:
        now = start
        fresh = await store.put(BODY, envelope("bob@example.net"))
        rcpts = ("d@example.net", "e@example.net", "f@gmail.test", "g@example.net")
        mixed = await store.put(BODY, envelope(*rcpts, mail_from="carol@example.org"))
        bounce = await store.put(BODY, envelope("alice@example.com", mail_from=""))
        mixed.attempts = 2
        mixed.next_attempt = now + 3600
        outcomes = [
            (RecipientStatus.DELIVERED, OK),
            (RecipientStatus.PENDING, BUSY),
            (RecipientStatus.FAILED, UNKNOWN),
            (RecipientStatus.FAILED, EXPIRED),
        ]
        history = []
        for position, (state, (status, reply)) in enumerate(
            zip(mixed.recipients, outcomes, strict=True)
        ):
            state.status, state.last_reply, state.attempts = status, reply, 2
            history.append(Attempt(position, now, status, reply, "mx.example.net"))
        await store.record_attempt(mixed, history)
        assert await store.hold(bounce.queue_id, now)
        return Queue(fresh.queue_id, mixed.queue_id, bounce.queue_id)
    finally:
        await store.close()


def fill(config: Path) -> Queue:
    return asyncio.run(_fill(data_dir(config)))


async def _entry(data: Path, queue_id: str):  # type: ignore[no-untyped-def]
    store = EmbeddedSpool(data, recover=False)
    await store.open()
    try:
        return await store.entry(queue_id)
    finally:
        await store.close()


def entry(config: Path, queue_id: str):  # type: ignore[no-untyped-def]
    return asyncio.run(_entry(data_dir(config), queue_id))


# -- list --------------------------------------------------------------------------------


def test_queue_list_json_is_one_postqueue_object_per_line(config: Path) -> None:
    q = fill(config)
    records = {r["queue_id"]: r for r in json_lines(config)}
    assert list(records) == [q.fresh, q.mixed, q.held]  # arrival order
    fresh, mixed, held = records[q.fresh], records[q.mixed], records[q.held]
    assert (fresh["queue_name"], mixed["queue_name"], held["queue_name"]) == (
        "incoming",
        "deferred",
        "hold",
    )
    assert fresh["sender"] == "alice@example.com" and held["sender"] == ""
    assert fresh["message_size"] == len(BODY)
    assert isinstance(fresh["arrival_time"], int) and abs(fresh["arrival_time"] - time.time()) < 60
    assert fresh["recipients"] == [
        {"address": "bob@example.net", "state": "queued", "attempts": 0, "reply": None}
    ]
    rcpts = mixed["recipients"]
    assert isinstance(rcpts, list)
    assert [r["state"] for r in rcpts] == ["delivered", "deferred", "bounced", "expired"]
    # postqueue's delay_reason: only for a recipient still waiting.
    assert ["delay_reason" in r for r in rcpts] == [False, True, False, False]
    assert rcpts[1]["delay_reason"] == "451 4.2.0 Mailbox busy"
    assert rcpts[2]["reply"] == {"code": 550, "enhanced": "5.1.1", "text": "User unknown"}
    assert mixed["attempts"] == 2 and mixed["held_since"] is None
    assert isinstance(held["held_since"], int)
    held_rcpts = held["recipients"]
    assert isinstance(held_rcpts, list) and held_rcpts[0]["state"] == "held"


def test_queue_list_table_and_filters(config: Path) -> None:
    q = fill(config)
    table = ok(config, "list")
    lines = table.splitlines()
    assert lines[0].startswith("Queue ID") and "Sender / recipients" in lines[0]
    assert any(line.startswith(q.fresh + " ") for line in lines)
    assert any(line.startswith(q.held + "!") for line in lines)  # the hold marker
    assert "e@example.net  deferred  (451 4.2.0 Mailbox busy)" in table
    assert "d@example.net  delivered" in table and "f@gmail.test  bounced" in table
    assert "g@example.net  expired" in table and "alice@example.com  held" in table
    assert lines[-1] == f"-- 3 messages, {3 * len(BODY)} bytes"

    def ids(*args: str) -> list[object]:
        return [r["queue_id"] for r in json_lines(config, *args)]

    assert ids("--sender", "CAROL@example.org") == [q.mixed]
    assert ids("--sender", "<>") == [q.held]
    assert ids("--recipient", "Bob@Example.NET") == [q.fresh]
    assert ids("--domain", "gmail.test") == [q.mixed]
    assert ids("--domain", "example.net") == [q.fresh, q.mixed]
    assert ids("--state", "held") == [q.held]
    assert ids("--state", "expired") == [q.mixed]
    assert ids("--state", "queued") == [q.fresh]
    assert ids("--domain", "example.net", "--state", "queued") == [q.fresh]
    assert ok(config, "list", "--sender", "nobody@example.net") == "No message matches (3 queued)\n"
    filtered = ok(config, "list", "--state", "held").splitlines()
    assert filtered[-1] == f"-- 1 message, {len(BODY)} bytes"
    assert mw(config, "list", "--state", "lost").returncode == 2  # click's usage error


def test_queue_list_empty_queue_says_so(config: Path) -> None:
    assert ok(config, "list") == "Mail queue is empty\n"  # no spool yet
    assert ok(config, "list", "--json") == ""
    assert not data_dir(config).exists()  # looking created nothing
    q = fill(config)
    for qid in (q.fresh, q.mixed, q.held):
        ok(config, "delete", qid)
    assert ok(config, "list") == "Mail queue is empty\n"
    assert ok(config, "list", "--json") == ""


# -- show --------------------------------------------------------------------------------


def test_queue_show_envelope_history_and_header(config: Path) -> None:
    q = fill(config)
    text = ok(config, "show", q.mixed)
    assert f"Queue ID:     {q.mixed}" in text
    assert "Sender:       <carol@example.org>" in text
    assert "Queue:        deferred" in text and "Attempts:     2" in text
    assert "  e@example.net  deferred  attempts=2  (451 4.2.0 Mailbox busy)" in text
    # The history is per recipient: its attempts under its address.
    after = text.split("\n  f@gmail.test\n", 1)[1].splitlines()[0]
    assert after.endswith("  bounced  550 5.1.1 User unknown  [mx.example.net]")
    assert "Subject: test" in text and "Hello" not in text  # header only
    assert "\nHello\n" in ok(config, "show", q.mixed, "--body")
    held = ok(config, "show", q.held)
    assert "Held since:" in held and "History:      no attempt yet" in held
    record = json.loads(ok(config, "show", q.mixed, "--json"))
    assert record["queue_id"] == q.mixed
    assert [h["address"] for h in record["history"]] == [
        "d@example.net",
        "e@example.net",
        "f@gmail.test",
        "g@example.net",
    ]
    assert record["history"][1]["reply"]["text"] == "Mailbox busy"


def test_queue_unknown_and_malformed_ids(config: Path) -> None:
    fill(config)
    unknown = "0000000000000000"
    for command in ("show", "hold", "release", "delete", "retry"):
        line = one_line_error(mw(config, command, unknown), 1)
        assert line == f"mailwright: queue: {unknown}: no such message in the queue"
        assert "is not a queue id" in one_line_error(mw(config, command, "../x"), 2)


# -- changes -----------------------------------------------------------------------------


def test_queue_retry_resets_the_time(config: Path) -> None:
    q = fill(config)
    before = entry(config, q.mixed)
    assert before.message.next_attempt > time.time() + 3000
    started = time.time()
    assert ok(config, "retry", q.mixed) == f"{q.mixed}: due now\n"
    after = entry(config, q.mixed)
    assert started - 1 <= after.message.next_attempt <= time.time()
    assert after.message.recipients == before.message.recipients  # only the time changed
    # --all / flush: every message with a pending recipient (held ones stay held).
    assert ok(config, "retry", "--all") == "3 messages due now\n"
    assert ok(config, "flush") == "3 messages due now\n"
    held = entry(config, q.held)
    assert held.held_since is not None
    assert mw(config, "retry").returncode == 2  # neither ids nor --all
    assert mw(config, "retry", q.mixed, "--all").returncode == 2

    async def finish() -> None:  # every recipient done (the runner would remove it)
        store = EmbeddedSpool(data_dir(config), recover=False)
        await store.open()
        message = await store.load(q.fresh)
        assert message is not None
        message.recipients[0].status = RecipientStatus.DELIVERED
        await store.update(message)
        await store.close()

    asyncio.run(finish())
    line = one_line_error(mw(config, "retry", q.fresh), 1)
    assert line == f"mailwright: queue: {q.fresh}: no recipient left to deliver to"


def test_queue_delete_removes_message_and_body_but_not_one_being_delivered(
    config: Path,
) -> None:
    q = fill(config)

    async def lease() -> None:
        store = EmbeddedSpool(data_dir(config), recover=False)
        await store.open()
        claimed = await store.claim(time.time(), 10, 600, "runner")
        assert [c.message.queue_id for c in claimed] == [q.fresh]
        await store.close()

    asyncio.run(lease())
    line = one_line_error(mw(config, "delete", q.fresh), 1)
    assert "being delivered right now" in line
    assert entry(config, q.fresh) is not None
    listed = json_lines(config, "--recipient", "bob@example.net")
    assert listed[0]["queue_name"] == "active"
    assert ok(config, "delete", q.mixed, q.held) == f"{q.mixed}: deleted\n{q.held}: deleted\n"
    assert entry(config, q.mixed) is None and entry(config, q.held) is None
    assert [r["queue_id"] for r in json_lines(config)] == [q.fresh]


def test_queue_hold_release_with_a_running_server(tmp_path: Path) -> None:
    """A held message is not delivered while the server runs — a marker message sent
    after it is — and is delivered once released (the release wakes the runner)."""
    server = SubprocessServer(tmp_path)  # writes its config; not started yet
    config = server.config_path
    sendmail = [sys.executable, "-m", "mailwright", "sendmail", "-C", str(config)]

    def send(subject: str) -> None:
        message = f"To: alice@{EXAMPLE}\nSubject: {subject}\n\nbody\n".encode()
        done = subprocess.run([*sendmail, "-t"], input=message, capture_output=True, timeout=60)
        assert done.returncode == 0, done

    send("held one")  # queued while no server runs
    (first,) = json_lines(config)
    held_id = str(first["queue_id"])
    assert ok(config, "hold", held_id) == f"{held_id}: held\n"
    server.start()
    try:
        send("marker")
        (delivered,) = server.maildir_messages(EXAMPLE, "alice")
        assert b"Subject: marker" in delivered  # the marker, not the earlier held one
        (still,) = json_lines(config)
        assert still["queue_id"] == held_id and still["queue_name"] == "hold"
        released = mw(config, "release", held_id)
        assert released.returncode == 0 and released.stdout == f"{held_id}: released\n"
        assert "queue runner was woken" in released.stderr
        messages = server.maildir_messages(EXAMPLE, "alice", count=2)
        # Maildir names start with the arrival time (delivery.maildir): not in order.
        assert sorted(b"Subject: held one" in m for m in messages) == [False, True]
        server.wait_queue_empty()
    finally:
        server.terminate()
