"""``mailwright session`` helpers in a real terminal (tmux) against ``mailwright
serve`` with TLS and AUTH: ``starttls`` and ``auth`` on the submission port, implicit
TLS with SCRAM-SHA-256 on the submissions port, the transcript saved with the secrets
redacted, and raw mode putting a bare-LF end of data on the wire."""

from __future__ import annotations

import base64
import re
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from helpers.secure import ALICE, PASSWORD, secure_extra, write_users
from helpers.servers import HOST, SubprocessServer
from helpers.tmux import WAIT_TIMEOUT, Tmux
from session.test_terminal import command, enter, session_env

pytestmark = pytest.mark.interop


@pytest.fixture(scope="module")
def mw(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SubprocessServer]:
    server = SubprocessServer(tmp_path_factory.mktemp("session-tls"), extra=secure_extra())
    write_users(server.data_dir)
    server.start()
    try:
        yield server
    finally:
        server.terminate()


@pytest.fixture
def tmux(tmp_path: Path) -> Iterator[Tmux]:
    term = Tmux(tmp_path)
    try:
        yield term
    finally:
        term.kill()


def assert_no_secret(text: str) -> None:
    assert PASSWORD not in text
    assert base64.b64encode(f"\0{ALICE}\0{PASSWORD}".encode()).decode() not in text


def test_starttls_then_auth_plain_and_a_saved_transcript(
    mw: SubprocessServer, tmux: Tmux, tmp_path: Path
) -> None:
    saved = tmp_path / "dialog.txt"
    tmux.start(command(f"{HOST}:{mw.ports['submission']}", "--no-history"), session_env(tmp_path))
    tmux.wait_for(r"^smtp>$")
    enter(tmux, "EHLO client.example.test")
    tmux.wait_for(r"^<- 250 ")
    tmux.type("st")
    tmux.key("Tab")  # completes what the EHLO reply advertised
    tmux.wait_for(r"^smtp> STARTTLS$")
    tmux.key("Enter")
    screen = tmux.wait_for(r"^== TLS started: TLSv1\.[23] ")
    # What the server presented, shown though not verified (a tester wants to see it).
    assert re.search(
        r"^== TLS started: TLSv1\.[23] \S+; certificate (O=mailwright self-signed,"
        r"CN=mx\.example\.test), issuer \1, valid until 20\d\d-.* UTC; not verified$",
        screen,
        re.MULTILINE,
    ), screen
    enter(tmux, "EHLO client.example.test")
    tmux.wait_for(r"^<~ 250-AUTH .*PLAIN")
    tmux.type("auth pl")
    tmux.key("Tab")  # the mechanisms advertised inside TLS
    tmux.wait_for(r"^smtp> auth plain$")
    enter(tmux, f" {ALICE}")
    tmux.wait_for(rf"^password for {ALICE}:")
    enter(tmux, PASSWORD)
    tmux.wait_for(r"^<~ 235 2\.7\.0 ")
    enter(tmux, f"save {saved}")
    tmux.wait_for(r"^transcript saved to ")
    enter(tmux, "QUIT")
    assert tmux.exit_status() == 0

    screen = tmux.capture()
    assert_no_secret(screen)  # the password was not echoed
    transcript = saved.read_text()
    assert_no_secret(transcript)
    lines = transcript.splitlines()
    assert lines[:2] == [f"== connected to {HOST}:{mw.ports['submission']}", lines[1]]
    assert lines[1].startswith("<- 220 ")
    assert "-> STARTTLS" in lines and "~> EHLO client.example.test" in lines
    assert "~> AUTH PLAIN <redacted>" in lines
    assert any(line.startswith("<~ 235 2.7.0") for line in lines)
    assert not any(line.startswith("~> QUIT") for line in lines)  # saved before QUIT


def test_tls_on_connect_with_scram_and_transcript_option(
    mw: SubprocessServer, tmux: Tmux, tmp_path: Path
) -> None:
    saved = tmp_path / "implicit.txt"
    args = ("--tls-on-connect", "--helo", "client.example.test", "--transcript", str(saved))
    port = mw.ports["submissions"]
    tmux.start(command(f"{HOST}:{port}", "--no-history", *args), session_env(tmp_path))
    tmux.wait_for(r"^== TLS on connect: TLSv1\.[23] ")
    tmux.wait_for(r"^<~ 250 ")  # --helo sent EHLO by itself
    tmux.wait_for(r"^smtp>$")
    enter(tmux, f"auth scram-sha-256 {ALICE}")
    tmux.wait_for(r"^password for ")
    enter(tmux, PASSWORD)
    tmux.wait_for(r"^<~ 235 ")
    tmux.key("C-d")  # Ctrl-D: QUIT and end
    assert tmux.exit_status() == 0
    screen = tmux.capture()
    assert "warning" not in screen  # the server proved it knows the password (SCRAM)
    lines = saved.read_text().splitlines()
    assert_no_secret("\n".join(lines))
    assert "~> EHLO client.example.test" in lines
    assert "~> AUTH SCRAM-SHA-256 <redacted>" in lines
    assert lines.count("~> <redacted>") == 2  # client-final, then the empty response
    assert "~> QUIT" in lines and any(line.startswith("<~ 221 ") for line in lines)


def test_wrong_password_shows_the_refusal_and_the_session_goes_on(
    mw: SubprocessServer, tmux: Tmux, tmp_path: Path
) -> None:
    port = mw.ports["submissions"]
    tmux.start(command(f"{HOST}:{port}", "--no-history", "--tls-on-connect"), session_env(tmp_path))
    tmux.wait_for(r"^smtp>$")
    enter(tmux, "EHLO client.example.test")
    tmux.wait_for(r"^<~ 250 ")
    enter(tmux, f"auth login {ALICE}")
    tmux.wait_for(r"^password for ")
    enter(tmux, "not the password")
    tmux.wait_for(r"^<~ 535 5\.7\.8 ")
    enter(tmux, "NOOP")
    tmux.wait_for(r"^<~ 250 ")
    enter(tmux, "QUIT")
    assert tmux.exit_status() == 0


def test_raw_mode_puts_a_bare_lf_end_of_data_on_the_wire(
    mw: SubprocessServer, tmux: Tmux, tmp_path: Path
) -> None:
    accepted = mw.accepted_count()
    tmux.start(command(f"{HOST}:{mw.port}", "--no-history"), session_env(tmp_path))
    tmux.wait_for(r"^smtp>$")
    enter(tmux, "raw")
    tmux.wait_for(r"^raw>$")
    for line in (
        "EHLO client.example.test",
        "MAIL FROM:<a@remote.test>",
        "RCPT TO:<bob@example.test>",
    ):
        enter(tmux, line)
    enter(tmux, "DATA")
    tmux.wait_for(r"^<- 354 ")
    # The smuggling ending (CVE-2023-51764): the server must not take it as the end.
    enter(tmux, "Subject: smuggled?\\n\\nbody\\n.\\n")
    tmux.wait_for(r"^-> Subject: smuggled\?\\n\\nbody\\n\.\\n  \(no line end\)$")
    screen = tmux.wait_for(r"^<- 5\d\d 5\.")
    assert "<- 250 2.0.0" not in screen.split("smuggled?")[1]
    assert tmux.exit_status() == 1  # the server closed the session
    assert mw.accepted_count() == accepted


def test_connection_refused_is_one_line_and_exit_status_3(tmux: Tmux, tmp_path: Path) -> None:
    with socket.socket() as probe:
        probe.bind((HOST, 0))
        port = probe.getsockname()[1]  # closed again: nothing listens there
    tmux.start(command(f"{HOST}:{port}", "--no-history"), session_env(tmp_path))
    assert tmux.exit_status() == 3
    screen = tmux.capture().splitlines()
    assert screen == [
        f"mailwright: session: cannot connect to {HOST}:{port}: Connection refused",
        "exit status 3",
    ]


def test_server_closing_while_the_prompt_waits_ends_the_session_at_once(
    tmux: Tmux, tmp_path: Path
) -> None:
    """Regression: the session noticed a closed connection only at the next Enter;
    now the prompt is ended when the server goes away (a 421 idle timeout here)."""
    hang_up = threading.Event()
    with socket.socket() as listener:
        listener.bind((HOST, 0))
        listener.listen(1)
        listener.settimeout(WAIT_TIMEOUT)

        def peer() -> None:
            conn, _ = listener.accept()
            with conn:
                conn.settimeout(WAIT_TIMEOUT)
                conn.sendall(b"220 scripted.test ESMTP\r\n")
                received = b""
                while b"NOOP\r\n" not in received:
                    received += conn.recv(1024)
                conn.sendall(b"250 2.0.0 Ok\r\n")
                hang_up.wait(WAIT_TIMEOUT)
                conn.sendall(b"421 4.4.2 Idle timeout, closing connection\r\n")

        thread = threading.Thread(target=peer, daemon=True)
        thread.start()
        port = listener.getsockname()[1]
        tmux.start(command(f"{HOST}:{port}", "--no-history"), session_env(tmp_path))
        enter(tmux, "NOOP")
        tmux.wait_for(r"^<- 250 2\.0\.0 Ok$")
        tmux.wait_for(r"^smtp>$")
        tmux.type("half a line")  # typing, no Enter
        tmux.wait_for(r"^smtp> half a line$")
        hang_up.set()
        assert tmux.exit_status() == 1
        thread.join(WAIT_TIMEOUT)
    screen = tmux.capture()
    assert "<- 421 4.4.2 Idle timeout, closing connection" in screen
    assert "== connection closed by the server" in screen


def test_auth_without_tls_warns_and_ctrl_c_at_the_password_sends_nothing(
    mw: SubprocessServer, tmux: Tmux, tmp_path: Path
) -> None:
    tmux.start(command(f"{HOST}:{mw.ports['submission']}", "--no-history"), session_env(tmp_path))
    tmux.wait_for(r"^smtp>$")
    enter(tmux, "EHLO client.example.test")
    tmux.wait_for(r"^<- 250 ")
    enter(tmux, f"auth login {ALICE}")
    tmux.wait_for(r"^warning: no TLS: LOGIN's base64 is not encryption")
    tmux.wait_for(r"^password for ")
    tmux.key("C-c")
    tmux.wait_for(r"^auth cancelled; nothing sent$")
    enter(tmux, "QUIT")
    assert tmux.exit_status() == 0
    assert "-> AUTH" not in tmux.capture()


def test_ctrl_c_while_a_reply_is_awaited_exits_130_with_one_line(
    tmux: Tmux, tmp_path: Path
) -> None:
    """A server that never answers: Ctrl-C ends the wait (no traceback), and the
    ``--transcript`` is still written."""
    saved = tmp_path / "t.txt"
    done = threading.Event()
    with socket.socket() as listener:
        listener.bind((HOST, 0))
        listener.listen(1)
        listener.settimeout(WAIT_TIMEOUT)

        def peer() -> None:
            conn, _ = listener.accept()
            with conn:
                conn.sendall(b"220 silent.test ESMTP\r\n")
                done.wait(WAIT_TIMEOUT)  # reads nothing, answers nothing

        thread = threading.Thread(target=peer, daemon=True)
        thread.start()
        port = listener.getsockname()[1]
        args = ("--no-history", "--transcript", str(saved))
        tmux.start(command(f"{HOST}:{port}", *args), session_env(tmp_path))
        tmux.wait_for(r"^smtp>$")
        enter(tmux, "NOOP")
        tmux.wait_for(r"^-> NOOP$")
        tmux.key("C-c")
        assert tmux.exit_status() == 130
        done.set()
        thread.join(WAIT_TIMEOUT)
    screen = tmux.capture()
    assert "Traceback" not in screen
    assert "mailwright: session: interrupted" in screen.splitlines()
    assert saved.read_text().splitlines()[-1] == "-> NOOP"
