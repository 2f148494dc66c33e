"""The transcript recorder: lines split wherever the reads split them, AUTH secrets
redacted through the whole SASL exchange, BDAT chunks shown by their announced size."""

from __future__ import annotations

import itertools

from mailwright.client.transcript import REDACTED, Kind, Recorder


def feed(recorder: Recorder, dialog: list[tuple[bool, bytes]], step: int | None) -> None:
    for outgoing, data in dialog:
        if step is None:
            recorder.trace(outgoing, data, True)
            continue
        for start in range(0, len(data), step):
            recorder.trace(outgoing, data[start : start + step], True)


SCRAM = [
    (True, b"AUTH SCRAM-SHA-256 bixhPWFsaWNl\r\n"),
    (False, b"334 cj1mYWtlbm9uY2U=\r\n"),
    (True, b"Yz1iaXdzLHI9ZmFrZW5vbmNl\r\n"),
    (False, b"334 dj1zaWduYXR1cmU=\r\n"),
    (True, b"\r\n"),
    (False, b"235 2.7.0 Authentication successful\r\n"),
    (True, b"MAIL FROM:<a@b.test>\r\n"),
]


def test_sasl_exchange_redacted_however_the_reads_split() -> None:
    for step in (None, 1, 3, 7):
        recorder = Recorder()
        feed(recorder, SCRAM, step)
        sent = [line.text for line in recorder.lines if line.kind is Kind.SEND]
        assert sent == [
            f"AUTH SCRAM-SHA-256 {REDACTED}",
            REDACTED,
            REDACTED,
            "MAIL FROM:<a@b.test>",
        ], step
        assert all("bixh" not in line.text for line in recorder.lines)


def test_show_secrets_keeps_them() -> None:
    recorder = Recorder(show_secrets=True)
    feed(recorder, SCRAM, None)
    assert "AUTH SCRAM-SHA-256 bixhPWFsaWNl" in [line.text for line in recorder.lines]


def test_multiline_reply_does_not_end_the_exchange_early() -> None:
    recorder = Recorder()
    feed(
        recorder,
        [
            (True, b"AUTH LOGIN\r\n"),
            (False, b"334 VXNlcm5hbWU6\r\n"),
            (True, b"YWxpY2U=\r\n"),
            (False, b"535-5.7.8 first line\r\n535 5.7.8 Authentication credentials invalid\r\n"),
            (True, b"QUIT\r\n"),
        ],
        None,
    )
    sent = [line.text for line in recorder.lines if line.kind is Kind.SEND]
    assert sent == ["AUTH LOGIN", REDACTED, "QUIT"]


def test_bdat_chunk_lines_follow_the_announced_size() -> None:
    chunk1 = b"Subject: x\r\n\r\nab"
    chunk2 = b"c\r\n"
    wire = b"BDAT %d\r\n%sBDAT %d LAST\r\n%sQUIT\r\n" % (len(chunk1), chunk1, len(chunk2), chunk2)
    for step in (None, 1, 5):
        recorder = Recorder()
        feed(recorder, [(True, wire)], step)
        assert [line.text for line in recorder.lines] == [
            "BDAT 16",
            "Subject: x",
            "",
            "ab",  # the chunk ends mid-line: shown as it went
            "BDAT 3 LAST",
            "c",
            "QUIT",
        ], step


def test_lines_are_timed_and_marked() -> None:
    ticks = itertools.count()
    recorder = Recorder(clock=lambda: float(next(ticks)))
    recorder.trace(False, b"220 hi\r\n", False)
    recorder.trace(True, b"EHLO x\r\n", True)
    recorder.note("closed")
    assert [line.render() for line in recorder.lines] == [
        "   1.000 <-  220 hi",
        "   2.000  ~> EHLO x",
        "   3.000 === closed",
    ]
