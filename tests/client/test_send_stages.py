"""``mailwright send --quit-after`` at each stage, attachments read back with the stdlib
``email`` package, ``--json``, and the plain (never coloured) output off a terminal;
against an in-process ``mailwright serve``."""

from __future__ import annotations

import json
from email import message_from_bytes, policy
from pathlib import Path

import pytest

from helpers.secure import ALICE, PASSWORD
from helpers.sendcli import send
from helpers.servers import EXAMPLE, InProcessServer

EHLO_REPLY = [
    "T <-  250-mx.example.test",
    "T <-  250-PIPELINING",
    "T <-  250-SIZE 52428800",
    "T <-  250-STARTTLS",
    "T <-  250-ENHANCEDSTATUSCODES",
    "T <-  250-8BITMIME",
    "T <-  250-DSN",
    "T <-  250-SMTPUTF8",
    "T <-  250-CHUNKING",
    "T <-  250 BINARYMIME",
]
GREETING = ["T <-  220 mx.example.test ESMTP mailwright"]
EHLO = [*GREETING, "T  -> EHLO client.test", *EHLO_REPLY]
QUIT = ["T  -> QUIT", "T <-  221 2.0.0 Bye"]
QUIT_TLS = ["T  ~> QUIT", "T <~  221 2.0.0 Bye"]
ENVELOPE = [
    "T  -> MAIL FROM:<a@client.test> SIZE=278",
    "T <-  250 2.1.0 Ok",
]
RCPT = ["T  -> RCPT TO:<alice@example.test>", "T <-  250 2.1.5 Ok"]
DATA = ["T  -> DATA", "T <-  354 End data with <CR><LF>.<CR><LF>"]

# stage -> the dialog between "Trying" and "Connection closed"
STAGES = {
    "connect": [],
    "banner": [*GREETING, *QUIT],
    "ehlo": [*EHLO, *QUIT],
    "mail": [*EHLO, *ENVELOPE, *QUIT],
    "rcpt": [*EHLO, *ENVELOPE, *RCPT, *QUIT],
    "data": [*EHLO, *ENVELOPE, *RCPT, *DATA],
}


@pytest.mark.parametrize("stage", list(STAGES))
def test_quit_after_each_stage_golden_and_nothing_delivered(
    mw: InProcessServer, stage: str
) -> None:
    before = mw.accepted_count()
    run = send(
        "--server", f"127.0.0.1:{mw.ports['inbound']}", "--pipeline",
        "--from", "a@client.test", "--to", "alice@example.test", "--quit-after", stage,
    )  # fmt: skip
    assert run.status == 0, run
    lines = run.lines()
    assert lines[0] == "T === Trying 127.0.0.1[127.0.0.1]:PORT..."
    dialog = lines[1:-2]
    if stage == "connect" and dialog == GREETING:
        dialog = []  # closed without a word; the greeting may have come in meanwhile
    assert dialog == STAGES[stage]
    assert lines[-2] == "T === Connection closed"
    word = stage if stage in ("connect", "banner", "ehlo") else stage.upper()
    assert lines[-1].startswith(f"ok via 127.0.0.1[127.0.0.1]:PORT: stopped after {word}")
    mw.wait_settled()
    assert mw.accepted_count() == before  # --quit-after data drops the connection: no mail


def test_quit_after_tls_and_auth_golden(mw: InProcessServer) -> None:
    common = (
        "--server", f"127.0.0.1:{mw.ports['submission']}", "--tls",
        "--auth", "PLAIN", "--user", ALICE, "--password-env", "PW", "--to", "bob@example.test",
    )  # fmt: skip
    tls = send(*common, "--quit-after", "tls", env={"PW": PASSWORD}).lines()
    assert tls[-5:-2] == [
        "T === TLS verification: failed for 127.0.0.1 (CA/B Forum profile): no chain to a "
        "trusted CA (self-signed or unknown issuer; validation failed: candidates exhausted: "
        "all candidates exhausted with no interior errors)",
        *QUIT_TLS,
    ]
    assert not any("EHLO" in line for line in tls[tls.index("T  -> STARTTLS") :])
    auth = send(*common, "--quit-after", "auth", env={"PW": PASSWORD}).lines()
    assert auth[-6:-2] == [
        "T  ~> AUTH PLAIN ********",
        "T <~  235 2.7.0 Authentication successful",
        *QUIT_TLS,
    ]


def test_attachments_and_html_parse_back(mw: InProcessServer, tmp_path: Path) -> None:
    pdf = tmp_path / "report.pdf"
    pdf.write_bytes(b"%PDF-1.4\n" + bytes(range(256)) * 40)
    text = tmp_path / "notes.txt"
    text.write_text("line one\nline two\n", "utf-8")
    run = send(
        "--server", f"127.0.0.1:{mw.ports['inbound']}", "--from", "a@client.test",
        "--to", "alice@example.test", "--cc", "bob@example.test",
        "--header", "Message-Id: <attach@client.test>", "--header", "X-Test: yes",
        "--body", "plain text body", "--html", "<p>html body</p>",
        "--attach", str(pdf), "--attach", str(text), "--quiet",
    )  # fmt: skip
    assert run.status == 0, run
    assert len(run.lines()) == 1  # --quiet: the summary only
    qid = run.out.split("queued as ")[1].split()[0]
    for box in ("alice", "bob"):  # --cc is an envelope recipient too
        stored = mw.message_with_id(EXAMPLE, box, qid)
        msg = message_from_bytes(stored, policy=policy.default)
        assert msg["Message-Id"] == "<attach@client.test>"
        assert msg["X-Test"] == "yes"
        assert msg["Cc"] == "bob@example.test"
        assert msg.get_content_type() == "multipart/mixed"
        parts = list(msg.iter_parts())
        assert parts[0].get_content_type() == "multipart/alternative"
        alternatives = list(parts[0].iter_parts())
        assert [p.get_content_type() for p in alternatives] == ["text/plain", "text/html"]
        assert alternatives[0].get_content().strip() == "plain text body"
        assert alternatives[1].get_content().strip() == "<p>html body</p>"
        attached = {p.get_filename(): p for p in msg.iter_attachments()}
        assert attached["report.pdf"].get_content_type() == "application/pdf"
        assert attached["report.pdf"].get_content() == pdf.read_bytes()
        assert attached["notes.txt"].get_content_type() == "text/plain"
        assert attached["notes.txt"].get_content() == "line one\nline two\n"


def test_bcc_is_envelope_only(mw: InProcessServer) -> None:
    run = send(
        "--server", f"127.0.0.1:{mw.ports['inbound']}", "--from", "a@client.test",
        "--to", "alice@example.test", "--bcc", "bob@example.test",
        "--header", "Message-Id: <bcc@client.test>",
    )  # fmt: skip
    assert run.status == 0, run
    assert "T  -> RCPT TO:<bob@example.test>" in run.lines()
    qid = run.out.split("queued as ")[1].split()[0]
    stored = mw.message_with_id(EXAMPLE, "bob", qid)
    assert b"bob@example.test" not in stored.split(b"\n\n", 1)[0].split(b"Message-Id")[1]


def test_data_file_sent_as_is(mw: InProcessServer, tmp_path: Path) -> None:
    raw = tmp_path / "m.eml"
    raw.write_bytes(b"From: x@client.test\nSubject: raw\nMessage-Id: <raw@client.test>\n\n.dot\n")
    run = send(
        "--server", f"127.0.0.1:{mw.ports['inbound']}", "--from", "x@client.test",
        "--to", "alice@example.test", "--data", str(raw), fixed=False,
    )  # fmt: skip
    assert run.status == 0, run
    assert "T  -> ..dot" in run.lines()  # dot-stuffed on the wire (RFC 5321 §4.5.2)
    qid = run.out.split("queued as ")[1].split()[0]
    assert mw.message_with_id(EXAMPLE, "alice", qid).endswith(b"\n\n.dot\n")


def test_json_is_one_object_with_replies_and_outcome(mw: InProcessServer) -> None:
    run = send(
        "--server", f"127.0.0.1:{mw.ports['inbound']}", "--from", "a@client.test",
        "--to", "alice@example.test,nobody@elsewhere.test", "--json",
    )  # fmt: skip
    doc = json.loads(run.out)
    assert run.status == 0 and doc["status"] == 0
    stages = [(r["stage"], r["code"], r["enhanced"]) for r in doc["replies"]]
    assert stages[:4] == [
        ("greeting", 220, None),
        ("ehlo", 250, None),
        ("mail", 250, "2.1.0"),
        ("rcpt", 250, "2.1.5"),
    ]
    assert ("rcpt", 550, "5.7.1") in stages
    assert [(r["address"], r["delivered"], r["code"]) for r in doc["recipients"]] == [
        ("alice@example.test", True, 250),
        ("nobody@elsewhere.test", False, 550),
    ]
    assert doc["transcript"][0]["dir"] == "info"
    assert {"t", "dir", "tls", "line"} <= set(doc["transcript"][1])


def test_no_colour_escapes_off_a_terminal(mw: InProcessServer) -> None:
    run = send("--server", f"127.0.0.1:{mw.ports['inbound']}", "--to", "alice@example.test")
    assert run.status == 0
    assert "\x1b[" not in run.out


def test_help_reads_like_a_man_page() -> None:
    run = send("--help", fixed=False)
    assert run.status == 0
    for heading in ("EXIT STATUS", "EXAMPLES", "--quit-after", "--password-env"):
        assert heading in run.out
    for code in ("0", "2", "3", "21", "22", "23", "24", "25", "26", "28", "29"):
        assert any(line.split()[:1] == [code] for line in run.out.splitlines()), code


def test_bulk_count_over_connections_json(mw: InProcessServer) -> None:
    before = mw.accepted_count()
    run = send(
        "--server", f"127.0.0.1:{mw.ports['inbound']}", "--from", "a@client.test",
        "--to", "alice@example.test", "--count", "30", "--concurrency", "4", "--pipeline",
        "--json",
    )  # fmt: skip
    assert run.status == 0, run
    doc = json.loads(run.out)
    assert (doc["count"], doc["concurrency"], doc["sent"], doc["failed"]) == (30, 4, 30, 0)
    assert set(doc["latency_ms"]) == {"p50", "p90", "p99"}
    assert 0 < doc["latency_ms"]["p50"] <= doc["latency_ms"]["p90"] <= doc["latency_ms"]["p99"]
    assert doc["messages_per_second"] > 0
    mw.wait_settled()
    assert mw.accepted_count() == before + 30  # every message, once
    text = send(
        "--server", f"127.0.0.1:{mw.ports['inbound']}", "--to", "alice@example.test",
        "--count", "5", "--concurrency", "2",
    )  # fmt: skip
    assert text.status == 0
    assert text.out.startswith("5 sent, 0 failed in ")
    assert "messages/s; latency p50 " in text.out
