"""Mail log: line formats, greppability, and resistance to log injection."""

from __future__ import annotations

import io
import json
import logging
import os
import select
from pathlib import Path

import pytest

from mailwright.config import LogConfig
from mailwright.obs.debuglog import setup_debug_log
from mailwright.obs.maillog import MailLog, _atomic_chunks, escape_control, format_timestamp
from mailwright.smtp import Reply

T0 = 1795262400.123  # 2026-11-21T12:00:00.123Z
REJECT = Reply.of(550, "5.1.1", "No such user here")


def text_log() -> tuple[MailLog, io.StringIO]:
    out = io.StringIO()
    return MailLog(out, clock=lambda: T0), out


def json_log() -> tuple[MailLog, io.StringIO]:
    out = io.StringIO()
    return MailLog(out, json_format=True, clock=lambda: T0), out


def test_timestamp_format() -> None:
    assert format_timestamp(T0) == "2026-11-21T12:00:00.123Z"
    assert format_timestamp(0.0) == "1970-01-01T00:00:00.000Z"


def test_accepted_text_line() -> None:
    mlog, out = text_log()
    mlog.accepted("Q123", "a@b", 123, ["c@d"], "127.0.0.1", "S9")
    assert out.getvalue() == (
        "2026-11-21T12:00:00.123Z Q123: accepted from=<a@b> size=123 nrcpt=1 to=<c@d> "
        "client=127.0.0.1 session=S9\n"
    )


def test_values_with_spaces_are_quoted() -> None:
    mlog, out = text_log()
    mlog.rejected("S1", ("::1", 2525), "rcpt", REJECT, 'unknown "user"', rcpt="x@y")
    line = out.getvalue()
    assert line.startswith("2026-11-21T12:00:00.123Z S1: rejected stage=rcpt client=[::1]:2525 ")
    assert 'to=<x@y> reply="550 5.1.1 No such user here" reason="unknown \\"user\\""' in line
    assert "from=" not in line  # None values are left out


def test_null_sender_is_visible() -> None:
    mlog, out = text_log()
    mlog.accepted("Q1", "", 10, ["c@d", "e@f"], "10.0.0.1", "S1")
    assert " from=<> " in out.getvalue()
    assert " nrcpt=2 to=<c@d>,<e@f> " in out.getvalue()


def test_queue_id_greppable_across_lifecycle() -> None:
    mlog, out = text_log()
    mlog.connect("S1", "192.0.2.1")
    mlog.accepted("QABC", "a@b", 5, ["x@y", "z@y"], "192.0.2.1", "S1")
    mlog.disconnect("S1", "192.0.2.1", {"ehlo": 1, "mail": 1, "rcpt": 2, "data": 1})
    mlog.delivered("QABC", "x@y", Reply.of(250, "2.0.0", "Delivered to maildir"))
    mlog.deferred("QABC", "z@y", Reply.of(451, "4.3.0", "try later"), T0 + 60)
    mlog.bounced("QABC", "z@y", Reply.of(550, "5.7.1", "no"))
    mlog.expired("QABC", "z@y")
    lines = out.getvalue().splitlines()
    assert len(lines) == 7
    mine = [line for line in lines if " QABC: " in line]
    assert [line.split()[2] for line in mine] == [
        "accepted",
        "delivered",
        "deferred",
        "bounced",
        "expired",
    ]
    assert "next=2026-11-21T12:01:00.123Z" in mine[2]
    assert lines[2].endswith("disconnect client=192.0.2.1 ehlo=1 mail=1 rcpt=2 data=1")


def test_listening_has_placeholder_id() -> None:
    mlog, out = text_log()
    mlog.listening("127.0.0.1", 2525, "inbound")
    assert out.getvalue() == (
        "2026-11-21T12:00:00.123Z -: listening address=127.0.0.1 port=2525 role=inbound\n"
    )


def test_json_lines() -> None:
    mlog, out = json_log()
    mlog.accepted("Q1", "a@b", 123, ["c@d"], "127.0.0.1", "S1")
    mlog.delivered("Q1", "c@d", Reply.of(250, "2.0.0", "ok"))
    mlog.disconnect("S1", "127.0.0.1", {"client": 3, "rcpt": 1})
    first, second, third = (json.loads(line) for line in out.getvalue().splitlines())
    assert first == {
        "ts": "2026-11-21T12:00:00.123Z",
        "id": "Q1",
        "event": "accepted",
        "from": "a@b",
        "size": 123,
        "nrcpt": 1,
        "to": ["c@d"],
        "client": "127.0.0.1",
        "session": "S1",
    }
    assert second["to"] == "c@d" and second["reply"] == "250 2.0.0 ok"
    assert third["client"] == "127.0.0.1" and third["stats.client"] == 3  # no clobbering


INJECTIONS = [
    "evil.example\r\n2026-11-21T12:00:00.000Z QFAKE: delivered to=<victim@x>",
    "evil\nQFAKE: delivered",
    "evil\rQFAKE: delivered",
    "evil\u2028QFAKE: delivered",
    "evil\x85QFAKE",
    "evil\x1b[2Jclear",
    "evil\\nQFAKE",
    "evil\udcff",  # lone surrogate from surrogateescape decoding
]


@pytest.mark.parametrize("payload", INJECTIONS)
def test_log_injection_text(payload: str) -> None:
    mlog, out = text_log()
    mlog.rejected("S1", "192.0.2.1", "helo", REJECT, "bad helo", helo=payload)
    mlog.accepted("Q1", payload + "@x", 1, [payload], "192.0.2.1", "S1", helo=payload)
    text = out.getvalue()
    assert len(text.splitlines()) == 2
    assert text.count("\n") == 2
    assert not any(0 < ord(ch) < 0x20 and ch != "\n" for ch in text)
    assert "\u2028" not in text and "\x85" not in text
    # Every physical line still starts with our own timestamp.
    assert all(
        line.startswith("2026-11-21T12:00:00.123Z S1: ")
        or line.startswith("2026-11-21T12:00:00.123Z Q1: ")
        for line in text.splitlines()
    )


@pytest.mark.parametrize("payload", INJECTIONS)
def test_log_injection_json(payload: str) -> None:
    mlog, out = json_log()
    mlog.rejected("S1", "192.0.2.1", "helo", REJECT, "bad helo", helo=payload, rcpt=payload)
    text = out.getvalue()
    assert len(text.splitlines()) == 1 and text.endswith("}\n")
    assert json.loads(text)["event"] == "rejected"


def test_escape_control() -> None:
    assert escape_control("plain ascii and ünïcode") == "plain ascii and ünïcode"
    assert escape_control("a\r\nb\tc\\d\x00\x7f") == "a\\r\\nb\\tc\\\\d\\x00\\x7f"


def test_file_append_mode(tmp_path: Path) -> None:
    path = tmp_path / "log" / "mail.log"
    first = MailLog(path, clock=lambda: T0)
    first.expired("Q1", "a@b")
    # Line-buffered: visible before close.
    assert path.read_text().count("\n") == 1
    first.close()
    second = MailLog(path, clock=lambda: T0)
    second.expired("Q2", "a@b")
    second.close()
    assert [line.split()[1] for line in path.read_text().splitlines()] == ["Q1:", "Q2:"]


def test_from_config(tmp_path: Path) -> None:
    mlog = MailLog.from_config(LogConfig(mail_log="mail.log", json_format=True), tmp_path)
    mlog.expired("Q1", "a@b")
    mlog.close()
    assert json.loads((tmp_path / "mail.log").read_text())["event"] == "expired"


def test_write_failure_does_not_raise(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    mlog = MailLog(tmp_path / "mail.log")
    mlog.close()
    with caplog.at_level(logging.ERROR, logger="mailwright.obs.maillog"):
        mlog.expired("Q1", "a@b")  # closed file: reported, not raised
        mlog.expired("Q2", "a@b")
    assert len([r for r in caplog.records if "mail log" in r.getMessage()]) == 1


def test_debug_log_levels_and_escaping() -> None:
    out = io.StringIO()
    logger = setup_debug_log(LogConfig(debug=False), out)
    logging.getLogger("mailwright.test").debug("hidden")
    logging.getLogger("mailwright.test").warning("helo %s", "x\r\nFAKE line")
    assert "hidden" not in out.getvalue()
    assert out.getvalue().count("\n") == 1
    assert "x\\r\\nFAKE line" in out.getvalue()
    assert out.getvalue().split()[0].endswith("Z")

    out2 = io.StringIO()
    setup_debug_log(LogConfig(debug=True), out2)  # replaces, not adds, our handler
    logging.getLogger("mailwright.test").debug("shown")
    assert "shown" in out2.getvalue() and "shown" not in out.getvalue()
    assert len(logger.handlers) == 1
    logger.handlers.clear()
    logger.propagate = True
    logger.setLevel(logging.NOTSET)


def test_connect_line_built_directly_matches_the_generic_format():
    """``connect`` builds its text line without ``format`` (it runs per connection);
    the line must be exactly what ``emit`` would write, escapes and quotes included."""
    import io

    from mailwright.obs.maillog import MailLog, _peer

    direct, generic = io.StringIO(), io.StringIO()
    fast, slow = MailLog(direct, clock=lambda: 1.5), MailLog(generic, clock=lambda: 1.5)
    for session_id, peer in [("abc", "127.0.0.1"), ("x y\n", ("::1", 25)), ("s", 'a b"c')]:
        fast.connect(session_id, peer)
        slow.emit(session_id, "connect", client=_peer(peer))
    assert direct.getvalue() == generic.getvalue()
    assert direct.getvalue().count("\n") == 3


def test_accepted_and_disconnect_lines_built_directly_match_the_generic_format():
    """Like ``connect``: the per-message and per-connection lines skip ``format``."""
    import io

    from mailwright.obs.maillog import MailLog, _peer

    direct, generic = io.StringIO(), io.StringIO()
    fast, slow = MailLog(direct, clock=lambda: 2.25), MailLog(generic, clock=lambda: 2.25)
    cases = [
        ("1M7Z80DHH8BH81Q5", "a@b.c", 10, ["x@y.z"], "127.0.0.1", "s1", "client.example"),
        ("Q", "", 0, ["a b@c", 'q"@d', "z@\u2028"], ("::1", 25), "s\n2", None),
        ("Q2", "we ird@x", 5, [], "10.0.0.1", "s3", "bad helo\x00"),
    ]
    for qid, sender, size, rcpts, peer, session, helo in cases:
        fast.accepted(qid, sender, size, rcpts, peer, session, helo=helo)
        slow.emit(
            qid,
            "accepted",
            **{"from": sender},
            size=size,
            nrcpt=len(rcpts),
            to=list(rcpts),
            client=_peer(peer),
            helo=helo,
            session=session,
        )
    for session, peer, stats in [
        ("s1", "127.0.0.1", {"messages": 1, "errors": 0}),
        ("s\t2", ("::1", 25), {"client": 3, "we ird": 2}),
    ]:
        fast.disconnect(session, peer, stats)
        fields = {"client": _peer(peer)}
        for key, value in stats.items():
            safe = "".join(ch if ch.isalnum() or ch in "_.-" else "_" for ch in key)
            fields[f"stats.{safe}" if safe in fields else safe] = value
        slow.emit(session, "disconnect", **fields)
    assert direct.getvalue() == generic.getvalue()
    assert direct.getvalue().count("\n") == 5


# -- several processes, one log ------------------------------------------------------


class RecordingPipe(io.TextIOWrapper):
    """The write end of a real pipe that remembers what each write() was given."""

    def __init__(self, fd: int) -> None:
        raw = open(fd, "wb", buffering=0)  # noqa: SIM115 - closed with the wrapper
        super().__init__(raw, encoding="utf-8", write_through=True)
        self.writes: list[str] = []

    def write(self, text: str) -> int:
        self.writes.append(text)
        return super().write(text)


def log_deliveries(log: MailLog, count: int) -> list[str]:
    """``count`` delivered lines through the public API; their queue ids, in order."""
    ids = [f"Q{n:015d}" for n in range(count)]
    for queue_id in ids:
        log.delivered(queue_id, f"{'x' * 60}@example.test", "250 2.0.0 Ok")
    return ids


def assert_lines_in_order(text: str, ids: list[str]) -> None:
    lines = text.splitlines(keepends=True)
    assert [line.split()[1].rstrip(":") for line in lines] == ids
    assert all(line.endswith("\n") and " delivered to=<" in line for line in lines)


def test_batches_to_a_pipe_go_out_in_whole_lines_of_at_most_pipe_buf(tmp_path: Path) -> None:
    """Session processes and the delivery worker share stderr: a write of more than
    PIPE_BUF bytes to a pipe may interleave with another process's, splitting lines."""
    read_fd, write_fd = os.pipe()
    pipe = RecordingPipe(write_fd)
    log = MailLog(pipe, buffered=True)
    ids = log_deliveries(log, 100)  # about 13 KB: more than PIPE_BUF, less than a pipe holds
    log.flush()
    pipe.close()
    with open(read_fd, "rb") as reader:
        assert_lines_in_order(reader.read().decode(), ids)
    assert len(pipe.writes) > 1
    for text in pipe.writes:
        assert text.endswith("\n")
        assert len(text.encode()) <= select.PIPE_BUF


def test_batches_to_a_file_go_out_in_one_write(tmp_path: Path) -> None:
    """O_APPEND makes one write to a regular file atomic, whatever its size."""
    path = tmp_path / "maillog"
    stream = RecordingPipe(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND))
    log = MailLog(stream, buffered=True)
    ids = log_deliveries(log, 100)
    log.flush()
    stream.close()
    assert len(stream.writes) == 1
    assert path.read_text() == stream.writes[0]
    assert_lines_in_order(stream.writes[0], ids)


def test_a_line_longer_than_pipe_buf_is_written_alone() -> None:
    long_line = "Q: accepted to=" + ",".join(f"<r{n}@example.test>" for n in range(400)) + "\n"
    text = "a\n" + long_line + "b\n"
    chunks = _atomic_chunks(text)
    assert "".join(chunks) == text
    assert long_line in chunks


def test_reopen_after_rename_writes_the_next_lines_to_a_new_file(tmp_path: Path) -> None:
    """logrotate renames the file and signals: buffered lines go to the renamed file
    (they happened before), later ones to a new file at the configured path."""
    path = tmp_path / "mail.log"
    mlog = MailLog(path, clock=lambda: T0, buffered=True)
    mlog.expired("Q1", "a@b")
    path.rename(tmp_path / "mail.log.1")
    mlog.reopen()
    mlog.expired("Q2", "a@b")
    mlog.close()
    assert [line.split()[1] for line in (tmp_path / "mail.log.1").read_text().splitlines()] == [
        "Q1:"
    ]
    assert [line.split()[1] for line in path.read_text().splitlines()] == ["Q2:"]


def test_reopen_of_a_stream_or_a_closed_log_does_nothing(tmp_path: Path) -> None:
    mlog, out = text_log()
    mlog.reopen()  # standard error or a caller's stream: nothing to reopen
    mlog.expired("Q1", "a@b")
    assert out.getvalue().count("\n") == 1
    closed = MailLog(tmp_path / "mail.log")
    closed.close()
    (tmp_path / "mail.log").unlink()
    closed.reopen()  # after close (shutdown): no file appears again
    assert not (tmp_path / "mail.log").exists()


def test_reopen_failure_keeps_logging_to_the_old_file(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "logs" / "mail.log"
    mlog = MailLog(path, clock=lambda: T0)
    (tmp_path / "logs").rename(tmp_path / "moved")
    (tmp_path / "logs").write_text("a file where the folder was")  # mkdir cannot work
    with caplog.at_level(logging.ERROR, logger="mailwright.obs.maillog"):
        mlog.reopen()
    assert any("cannot reopen the mail log" in r.getMessage() for r in caplog.records)
    mlog.expired("Q1", "a@b")
    mlog.close()
    assert "Q1: expired" in (tmp_path / "moved" / "mail.log").read_text()
