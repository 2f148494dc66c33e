"""Every exit status of ``mailwright send``: a refusal at each stage from Postfix's
``smtp-sink`` (an independent peer, ``-f`` rejects the named command with a 5xx),
and the connection, TLS, AUTH and usage failures against ``mailwright serve``."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from helpers.outbound import smtp_sink
from helpers.secure import ALICE, WRONG_PASSWORD
from helpers.sendcli import ScriptedPeer, send
from helpers.servers import InProcessServer
from mailwright.client.outcome import (
    EXIT_AUTH,
    EXIT_BANNER,
    EXIT_CONNECT,
    EXIT_DATA,
    EXIT_EHLO,
    EXIT_MAIL,
    EXIT_MESSAGE,
    EXIT_RCPT,
    EXIT_TLS,
    EXIT_USAGE,
)

pytestmark = pytest.mark.interop


@pytest.mark.parametrize(
    ("reject", "status"),
    [
        ("EHLO,HELO", EXIT_EHLO),
        ("MAIL", EXIT_MAIL),
        ("RCPT", EXIT_RCPT),
        ("DATA", EXIT_DATA),
        (".", EXIT_MESSAGE),
    ],
)
def test_refusal_at_each_stage_from_smtp_sink(tmp_path: Path, reject: str, status: int) -> None:
    with smtp_sink(tmp_path, "-f", reject) as sink:
        run = send(
            "--server", f"{sink.address}:{sink.port}",
            "--from", "a@client.test", "--to", "b@sink.example.test",
        )  # fmt: skip
    assert run.status == status, run
    assert f"(exit {status}, " in run.lines()[-1]
    # The refusal explained in the words probe and session use (client.explain).
    assert run.lines()[-2].startswith("== why: "), run.lines()[-2:]
    assert any(line.startswith("T <-  5") for line in run.lines()), run  # the refusal shown


@pytest.mark.parametrize(
    ("replies", "args", "status"),
    [
        ({"CONNECT": "554 5.7.1 No service for you"}, (), EXIT_BANNER),
        ({"BDAT": "552 5.3.4 Chunk refused"}, ("--bdat", "10"), EXIT_DATA),
    ],
    ids=["banner", "bdat"],
)
def test_refusal_from_a_scripted_peer(
    replies: dict[str, str], args: tuple[str, ...], status: int
) -> None:
    peer = ScriptedPeer(replies)
    try:
        run = send(
            "--server", f"127.0.0.1:{peer.port}", *args,
            "--from", "a@client.test", "--to", "b@scripted.test",
        )  # fmt: skip
    finally:
        peer.close()
    assert run.status == status, run
    refusal = next(iter(replies.values()))
    assert f"T <-  {refusal}" in run.lines()


def test_nothing_listening_is_the_connection_status() -> None:
    with socket.socket() as s:  # a port that was free a moment ago and is closed now
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    run = send("--server", f"127.0.0.1:{port}", "--to", "b@example.test")
    assert run.status == EXIT_CONNECT, run
    assert run.lines()[-2].startswith("T *** connect: connect failed")


def test_wrong_password_is_the_auth_status(mw: InProcessServer) -> None:
    run = send(
        "--server", f"127.0.0.1:{mw.ports['submission']}", "--tls",
        "--auth", "PLAIN", "--user", ALICE, "--password-env", "PW", "--to", "bob@example.test",
        env={"PW": WRONG_PASSWORD},
    )  # fmt: skip
    assert run.status == EXIT_AUTH, run
    assert "T <~  535 5.7.8 Authentication credentials invalid" in run.lines()
    assert WRONG_PASSWORD not in run.out


def test_untrusted_certificate_with_verify_is_the_tls_status(mw: InProcessServer) -> None:
    run = send(
        "--server", f"127.0.0.1:{mw.ports['submission']}", "--tls-verify",
        "--to", "bob@example.test",
    )  # fmt: skip
    assert run.status == EXIT_TLS, run
    assert any("CERTIFICATE_VERIFY_FAILED" in line for line in run.lines())


def test_tls_required_not_offered_is_the_tls_status(tmp_path: Path) -> None:
    with smtp_sink(tmp_path) as sink:  # smtp-sink offers no STARTTLS
        run = send("--server", f"{sink.address}:{sink.port}", "--tls", "--to", "b@x.test")
    assert run.status == EXIT_TLS, run
    assert "TLS required but not offered" in run.lines()[-1]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ((), "no recipient"),
        (("--to", "b@x.test", "--auth", "PLAIN"), "--auth needs --user"),
        (("--to", "b@x.test", "-4", "-6"), "exclude each other"),
        (("--to", "b@x.test", "--tls", "--tls-on-connect"), "choose one of"),
        (("--to", "b@x.test", "--dsn-notify", "NEVER,SUCCESS"), "--dsn-notify"),
        (("--to", "b@x.test", "--data", "/nonexistent/m.eml"), "--data /nonexistent/m.eml"),
        (("--to", "b@x.test", "--header", "no colon"), "not 'Name: value'"),
        (("--to", "b@x.test", "--server", "[::1"), "bad server"),
        (
            ("--to", "b@x.test", "--auth", "PLAIN", "--user", "u", "--password-env", "UNSET_VAR"),
            "--password-env UNSET_VAR: not set",
        ),
    ],
)
def test_usage_errors_one_line_status_2(args: tuple[str, ...], message: str) -> None:
    server = () if "--server" in args else ("--server", "127.0.0.1:9")
    run = send(*server, *args, fixed=False)
    assert run.status == EXIT_USAGE, run
    assert len(run.err.strip().splitlines()) == 1, run.err
    assert message in run.err


def test_lmtp_one_reply_per_recipient(tmp_path: Path) -> None:
    with smtp_sink(tmp_path, "-L") as sink:
        run = send(
            "--server", f"{sink.address}:{sink.port}", "--protocol", "lmtp",
            "--from", "a@client.test", "--to", "b@sink.example.test,c@sink.example.test",
        )  # fmt: skip
    assert run.status == 0, run
    lines = run.lines()
    assert "T  -> LHLO client.test" in lines
    dot = lines.index("T  -> .")
    assert [line[:9] for line in lines[dot + 1 : dot + 3]] == ["T <-  250"] * 2  # RFC 2033 §4.2
    assert "2/2 recipient(s) accepted" in lines[-1]
