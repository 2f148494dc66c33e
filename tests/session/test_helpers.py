"""The session's pieces that need no server: the AUTH helper's exchange, Tab
completion, the target and history options, the transcript's wire lines."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest

from mailwright.client.interactive.auth import AuthExchange
from mailwright.client.interactive.completion import candidates
from mailwright.client.interactive.options import (
    history_path,
    parse_dns,
    parse_host_port,
    prepare_history,
)
from mailwright.client.interactive.transcript import wire_lines
from mailwright.smtp import Auth, AuthResponse, Reply


def challenge(data: bytes) -> Reply:
    return Reply(334, "", (base64.b64encode(data).decode(),))


# -- auth ---------------------------------------------------------------------------


def test_auth_plain_sends_the_initial_response() -> None:
    exchange = AuthExchange("plain", "alice", "s3cret")
    assert exchange.start() == Auth("PLAIN", b"\0alice\0s3cret")


def test_auth_login_answers_whatever_the_prompts_say() -> None:
    exchange = AuthExchange("LOGIN", "alice", "s3cret")
    assert exchange.start() == Auth("LOGIN", None)
    assert exchange.answer(challenge(b"Username:")) == AuthResponse(b"alice")
    assert exchange.answer(challenge(b"Password:")) == AuthResponse(b"s3cret")
    assert exchange.failure == ""


def test_auth_cram_md5_matches_rfc_2195_example() -> None:
    exchange = AuthExchange("cram-md5", "tim", "tanstaaftanstaaf")
    assert exchange.start() == Auth("CRAM-MD5", None)
    response = exchange.answer(challenge(b"<1896.697170952@postoffice.reston.mci.net>"))
    assert response == AuthResponse(b"tim b913a602c7eda7a495b4e6e7334d3890")


def test_auth_challenge_that_is_not_base64_cancels_with_a_star() -> None:
    exchange = AuthExchange("LOGIN", "alice", "s3cret")
    exchange.start()
    assert exchange.answer(Reply(334, "", ("not base64!",))) == AuthResponse(None)
    assert "cancelled" in exchange.failure


def test_scram_without_server_signature_is_not_verified() -> None:
    exchange = AuthExchange("SCRAM-SHA-256", "alice", "s3cret")
    start = exchange.start()
    assert start.initial_response is not None and start.initial_response.startswith(
        b"n,,n=alice,r="
    )
    assert not exchange.server_verified


# -- completion ---------------------------------------------------------------------


def test_first_word_completes_verbs_and_only_advertised_extension_verbs() -> None:
    assert candidates("", {}) == [
        "EHLO", "HELO", "MAIL FROM:<", "RCPT TO:<", "DATA", "RSET", "NOOP", "QUIT",
        "VRFY", "EXPN", "HELP", "raw", "save",
    ]  # fmt: skip
    assert "STARTTLS" not in candidates("st", {})
    assert candidates("st", {"STARTTLS": ""}) == ["STARTTLS"]
    assert candidates("m", {}) == ["MAIL FROM:<"]
    assert candidates("a", {"AUTH": "PLAIN"}) == ["AUTH"]


def test_auth_completes_the_advertised_mechanisms_the_helper_runs() -> None:
    extensions = {"AUTH": "GSSAPI PLAIN SCRAM-SHA-256"}
    assert candidates("auth ", extensions) == ["plain", "scram-sha-256"]
    assert candidates("AUTH s", extensions) == ["scram-sha-256"]


def test_mail_and_rcpt_complete_the_parameters_of_advertised_extensions() -> None:
    extensions = {"SIZE": "1000", "SMTPUTF8": "", "DSN": ""}
    assert candidates("MAIL FROM:<a@b> ", extensions) == [
        "SIZE=", "SMTPUTF8", "RET=FULL", "RET=HDRS", "ENVID=",
    ]  # fmt: skip
    assert candidates("MAIL FROM:<a@b> s", {}) == []
    assert candidates("RCPT TO:<c@d> no", extensions) == ["NOTIFY="]


# -- options ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("mx.example.org", ("mx.example.org", 25)),
        ("127.0.0.1:2525", ("127.0.0.1", 2525)),
        ("[::1]:2525", ("::1", 2525)),
        ("[::1]", ("::1", 25)),
        ("::1", ("::1", 25)),
    ],
)
def test_host_port(text: str, expected: tuple[str, int]) -> None:
    assert parse_host_port(text) == expected


@pytest.mark.parametrize("text", ["", ":25", "host:0", "host:65536", "host:smtp", "[::1", "[::1]x"])
def test_bad_host_port_is_one_clear_error(text: str) -> None:
    with pytest.raises(ValueError, match=r"port|host|IPv6"):
        parse_host_port(text)


def test_dns_option_needs_an_address() -> None:
    assert parse_dns("127.0.0.1:5353") == ("127.0.0.1", 5353)
    assert parse_dns("::1") == ("::1", 53)
    with pytest.raises(ValueError, match="IP address"):
        parse_dns("ns.example.org")


def test_history_lives_in_the_xdg_state_home(tmp_path: Path) -> None:
    env = {"XDG_STATE_HOME": str(tmp_path / "state"), "HOME": str(tmp_path / "home")}
    assert history_path(env) == tmp_path / "state" / "mailwright" / "session_history"
    # Unset or relative: ignored, as the XDG Base Directory specification says.
    for state in ("", "relative/state"):
        env = {"XDG_STATE_HOME": state, "HOME": str(tmp_path / "home")}
        expected = tmp_path / "home" / ".local" / "state" / "mailwright" / "session_history"
        assert history_path(env) == expected


def test_history_file_is_private(tmp_path: Path) -> None:
    path = tmp_path / "state" / "mailwright" / "session_history"
    prepare_history(path)
    assert path.is_file()
    assert path.stat().st_mode & 0o777 == 0o600
    assert path.parent.stat().st_mode & 0o777 == 0o700


def test_history_that_cannot_be_made_says_where(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(ValueError, match=str(blocker)):
        prepare_history(blocker / "mailwright" / "session_history")


# -- transcript ---------------------------------------------------------------------


def test_wire_lines_show_bare_line_ends_and_a_missing_one() -> None:
    assert wire_lines(b"MAIL FROM:<a@b>\r\n") == ["MAIL FROM:<a@b>"]
    assert wire_lines(b"a\r\n\r\n") == ["a", ""]
    assert wire_lines(b"body\n.\n") == ["body\\n.\\n  (no line end)"]
    assert wire_lines(b"x\ry\r\n") == ["x\\ry"]
