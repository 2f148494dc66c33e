"""swaks against ``mailwright serve`` with TLS and AUTH.

STARTTLS (``-tls``) on the submission port with each of ``-a PLAIN|LOGIN|CRAM-MD5``,
implicit TLS (``-tlsc``) on the submissions port, and the refusals swaks sees without
TLS or with a wrong password.  The users are created with ``mailwright user add
--password-stdin`` (bob with ``--cram-md5``) before the server starts; the server's
self-signed certificate is accepted as swaks does by default (no verification).
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator

import pytest

from helpers.secure import ALICE, BOB, PASSWORD, WRONG_PASSWORD, secure_extra
from helpers.servers import EXAMPLE, SubprocessServer
from helpers.tools import require_swaks_tls
from helpers.wire import CLIENT_NAME, queue_id_of

pytestmark = pytest.mark.interop


def cli_user_add(server: SubprocessServer, login: str, *options: str) -> None:
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "mailwright",
            "user",
            "add",
            login,
            "--password-stdin",
            "-c",
            str(server.config_path),
            *options,
        ],
        input=PASSWORD + "\n",
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "PYTHONWARNINGS": "ignore"},
    )
    assert done.returncode == 0, done
    assert done.stdout.strip() == f"added {login}"


@pytest.fixture(scope="module")
def mw(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SubprocessServer]:
    require_swaks_tls()
    server = SubprocessServer(tmp_path_factory.mktemp("swaks-tls"), extra=secure_extra())
    cli_user_add(server, ALICE)
    cli_user_add(server, BOB, "--cram-md5")
    server.start()
    try:
        yield server
    finally:
        server.terminate()


def swaks(server: SubprocessServer, role: str, *args: str) -> tuple[int, str]:
    cmd = [
        require_swaks_tls(),
        "--server",
        server.host,
        "--port",
        str(server.ports[role]),
        "--helo",
        CLIENT_NAME,
        "--timeout",
        "10",
        *args,
    ]
    done = subprocess.run(cmd, capture_output=True, timeout=30, stdin=subprocess.DEVNULL)
    return done.returncode, (done.stdout + done.stderr).decode("utf-8", "replace")


def received(transcript: str) -> list[str]:
    """Server lines as swaks shows them: ``<-``/``<**`` in plaintext, ``<~``/``<~*``
    under TLS."""
    return [ln for ln in transcript.splitlines() if ln.startswith(("<- ", "<**", "<~ ", "<~*"))]


def reply_text(line: str) -> str:
    return line.split(" ", 1)[1].strip()


def submit(server: SubprocessServer, role: str, tls: str, mechanism: str, user: str, to: str):
    code, out = swaks(
        server,
        role,
        tls,
        "--auth",
        mechanism,
        "--auth-user",
        user,
        "--auth-password",
        PASSWORD,
        "--from",
        user,
        "--to",
        to,
        "--data",
        f"Subject: swaks {mechanism} {tls}\n\nsent with swaks\n",
    )
    assert code == 0, out
    replies = [reply_text(line) for line in received(out)]
    assert "235 2.7.0 Authentication successful" in replies, out
    [queued] = [r for r in replies if r.startswith("250 2.0.0 Ok: queued as ")]
    return out, queue_id_of(queued)


@pytest.mark.parametrize(
    ("mechanism", "user"), [("PLAIN", ALICE), ("LOGIN", ALICE), ("CRAM-MD5", BOB)]
)
def test_swaks_starttls_auth(mw: SubprocessServer, mechanism: str, user: str):
    out, queue_id = submit(mw, "submission", "-tls", mechanism, user, f"alice@{EXAMPLE}")
    lines = out.splitlines()
    assert " -> STARTTLS" in lines
    assert "<-  220 2.0.0 Ready to start TLS" in lines
    assert any(line.startswith("=== TLS started with cipher TLSv1.") for line in lines), out
    # AUTH happened under TLS (swaks marks TLS traffic with ~>).
    assert any(line.startswith(f" ~> AUTH {mechanism}") for line in lines), out
    msg = mw.message_with_id(EXAMPLE, "alice", queue_id)
    assert f"Subject: swaks {mechanism} -tls".encode() in msg
    assert b"with ESMTPSA (TLSv1." in msg


@pytest.mark.parametrize(("mechanism", "user"), [("PLAIN", ALICE), ("CRAM-MD5", BOB)])
def test_swaks_implicit_tls_auth(mw: SubprocessServer, mechanism: str, user: str):
    out, queue_id = submit(mw, "submissions", "-tlsc", mechanism, user, f"bob@{EXAMPLE}")
    assert " -> STARTTLS" not in out.splitlines()
    assert "=== TLS started with cipher TLSv1." in out
    msg = mw.message_with_id(EXAMPLE, "bob", queue_id)
    assert f"Subject: swaks {mechanism} -tlsc".encode() in msg
    assert b"with ESMTPSA (TLSv1." in msg


def test_swaks_starttls_auth_relays_to_remote_domain(mw: SubprocessServer):
    """Authenticated relay: accepted and queued (delivery then fails: no relay)."""
    _, queue_id = submit(mw, "submission", "-tls", "PLAIN", ALICE, "someone@remote.test")
    assert queue_id


def test_swaks_auth_without_tls_is_not_offered(mw: SubprocessServer):
    code, out = swaks(
        mw,
        "submission",
        "--auth",
        "PLAIN",
        "--auth-user",
        ALICE,
        "--auth-password",
        PASSWORD,
        "--from",
        ALICE,
        "--to",
        f"alice@{EXAMPLE}",
    )
    assert code != 0
    assert "Host did not advertise authentication" in out, out


def test_swaks_wrong_password_535(mw: SubprocessServer):
    code, out = swaks(
        mw,
        "submission",
        "-tls",
        "--auth",
        "LOGIN",
        "--auth-user",
        ALICE,
        "--auth-password",
        WRONG_PASSWORD,
        "--from",
        ALICE,
        "--to",
        f"alice@{EXAMPLE}",
    )
    assert code != 0
    assert "535 5.7.8 Authentication credentials invalid" in out, out
    assert "queued as" not in out


def test_swaks_submission_without_auth_530(mw: SubprocessServer):
    code, out = swaks(mw, "submission", "-tls", "--from", ALICE, "--to", f"alice@{EXAMPLE}")
    assert code != 0
    assert "530 5.7.0 Authentication required" in out, out
