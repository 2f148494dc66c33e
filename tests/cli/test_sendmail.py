"""``mailwright sendmail`` as cron, PHP and git call it, end to end.

Every test runs the real command in a subprocess (``python -m mailwright sendmail``,
or the console script through a symlink named ``sendmail``), feeding the message on
standard input with LF line ends as those programs do.  What it stored is checked
where it ends up: in the Maildir of a running ``mailwright serve`` (its delivery
worker, woken through ``spool/wake``), or, with no server, through ``mailwright queue
show --body`` / ``list --json``.  Exit codes are sendmail's (sysexits.h).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from helpers.servers import EXAMPLE, HOSTNAME, SubprocessServer, config_dict, to_toml
from mailwright.cli import sendmail as sm

MAILWRIGHT = Path(sys.executable).with_name("mailwright")  # the console script


def run(
    *args: str, stdin: bytes = b"", config: Path | None = None, exe: list[str] | None = None
) -> subprocess.CompletedProcess[bytes]:
    env = {k: v for k, v in os.environ.items() if k != sm.CONFIG_ENV}
    if config is not None:
        env[sm.CONFIG_ENV] = str(config)
    command = exe or [sys.executable, "-m", "mailwright", "sendmail"]
    return subprocess.run([*command, *args], input=stdin, capture_output=True, timeout=60, env=env)


def queue(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "mailwright", "queue", *args, "-c", str(config)],
        capture_output=True,
        text=True,
        timeout=60,
    )


def queued(config: Path) -> list[dict[str, object]]:
    done = queue(config, "list", "--json")
    assert done.returncode == 0, done
    return [json.loads(line) for line in done.stdout.splitlines()]


def stored(config: Path, queue_id: str) -> bytes:
    done = queue(config, "show", queue_id, "--body")
    assert done.returncode == 0, done
    return done.stdout.partition("\n\n")[2].encode()  # after the envelope block


@pytest.fixture
def config(tmp_path: Path) -> Path:
    """A configuration whose data folder no server runs on (mail stays queued)."""
    path = tmp_path / "cfg.toml"
    path.write_text(to_toml(config_dict(tmp_path / "data")), "utf-8")
    return path


PHP_MESSAGE = (
    b"To: Alice <alice@example.test>\n"
    b"Cc: bob@example.test\n"
    b"Bcc: sink@catchall.test\n"
    b"Subject: from PHP\n"
    b"\n"
    b"first line\n"
    b".\n"
    b"after a lone dot\n"
)


def test_sendmail_t_i_as_php_calls_it_is_delivered_by_a_running_server(tmp_path: Path) -> None:
    """PHP's ``sendmail -t -i``: recipients from To/Cc/Bcc, the Bcc field removed, the
    lone "." kept as text, Date/Message-ID/From added, LF turned into the wire form;
    the running server's worker is woken and delivers at once (within
    ``DELIVERY_TIMEOUT``, far below the runner's 30 s idle scan)."""
    server = SubprocessServer(tmp_path).start()
    try:
        # A first message makes sure the worker runs and has scanned the queue: it
        # then sleeps MAX_IDLE_SLEEP, so only the wake-up delivers the next one soon.
        assert (
            run(
                "bob@example.test", stdin=b"Subject: marker\n\n", config=server.config_path
            ).returncode
            == 0
        )
        assert len(server.maildir_messages(EXAMPLE, "bob")) == 1
        done = run("-t", "-i", stdin=PHP_MESSAGE, config=server.config_path)
        assert done.returncode == 0, done
        assert done.stdout == done.stderr == b""
        alice = server.maildir_messages(EXAMPLE, "alice")
        bob = server.maildir_messages(EXAMPLE, "bob", count=2)[1:]
        sink = server.maildir_messages("catchall.test", "sink")
        assert len(alice) == len(bob) == len(sink) == 1, server.mail_log()
        # Delivery prepends Return-Path and Delivered-To; what we stored starts after.
        ours = [m[m.index(b"Received: by ") :] for m in (*alice, *bob, *sink)]
        assert ours[0] == ours[1] == ours[2]  # one stored copy, no Bcc in it
        message = ours[0]
        header, _, body = message.partition(b"\n\n")
        lines = header.split(b"\n")
        uid = os.getuid()
        assert lines[0] == f"Received: by {HOSTNAME} (mailwright, from userid {uid})".encode()
        assert b"bcc" not in header.lower() and b"sink@" not in message
        assert b"\nSubject: from PHP\n" in header + b"\n"
        for name in (b"From: ", b"Date: ", b"Message-ID: <"):
            assert any(line.startswith(name) for line in lines), header
        assert body == b"first line\n.\nafter a lone dot\n"
        assert b"\r" not in message  # Maildir holds LF; the spool held CRLF
        log = server.mail_log()
        assert " accepted from=" in log and "client=local" in log
        server.wait_queue_empty()
    finally:
        server.terminate()


def test_sendmail_without_i_a_lone_dot_ends_the_message(config: Path) -> None:
    done = run("alice@example.test", stdin=b"Subject: dots\n\nkept\n.\nnever read\n", config=config)
    assert done.returncode == 0, done
    (entry,) = queued(config)
    message = stored(config, str(entry["queue_id"]))
    assert message.endswith(b"\n\nkept\n")
    assert b"never read" not in message


def test_git_send_email_keeps_the_message_and_uses_the_envelope_given(config: Path) -> None:
    """git send-email: ``sendmail -i -f FROM RCPT...``, a complete message: only our
    Received field is added, nothing else changes; the envelope is as given."""
    original = (
        b"From: Ann Dev <ann@example.org>\n"
        b"To: list@example.test\n"
        b"Date: Mon, 1 Jan 2024 00:00:00 +0000\n"
        b"Message-ID: <patch-1@example.org>\n"
        b"Subject: [PATCH] fix\n"
        b"\n"
        b"diff --git a/x b/x\n"
        b".\n"
    )
    done = run(
        "-i", "-f", "ann@example.org", "list@example.test", "bob@example.test",
        stdin=original, config=config,
    )  # fmt: skip
    assert done.returncode == 0, done
    (entry,) = queued(config)
    assert entry["sender"] == "ann@example.org"
    rcpts = entry["recipients"]
    assert isinstance(rcpts, list)
    assert [r["address"] for r in rcpts] == ["list@example.test", "bob@example.test"]
    message = stored(config, str(entry["queue_id"]))
    first, _, rest = message.partition(b"\n\t")
    assert first.startswith(b"Received: by ")
    assert rest.split(b"\n", 1)[1] == original


def test_cron_through_a_symlink_named_sendmail(tmp_path: Path, config: Path) -> None:
    """cron runs ``sendmail -FCronDaemon -i -B8BITMIME -oem USER``: argv[0] is a
    symlink named sendmail, the user is a bare login (qualified with our hostname),
    the body 8-bit, and the added From carries the -F name."""
    bindir = tmp_path / "bin"
    bindir.mkdir()
    (bindir / "sendmail").symlink_to(MAILWRIGHT)
    body = "Subject: Cron <root@host> run-parts\n\nrésumé ok\n".encode()
    done = run(
        "-FCronDaemon", "-i", "-B8BITMIME", "-oem", "root",
        stdin=body, config=config, exe=[str(bindir / "sendmail")],
    )  # fmt: skip
    assert done.returncode == 0, done
    (entry,) = queued(config)
    rcpts = entry["recipients"]
    assert isinstance(rcpts, list) and rcpts[0]["address"] == f"root@{HOSTNAME}"
    show = queue(config, "show", str(entry["queue_id"]))
    assert "Body:         8BITMIME" in show.stdout
    message = stored(config, str(entry["queue_id"]))
    login = sm._identity(sm.Options(), HOSTNAME)[1]
    assert f"\nFrom: CronDaemon <{login}>\n".encode() in message
    assert message.endswith("\n\nrésumé ok\n".encode())


def test_mailq_symlink_lists_the_queue(tmp_path: Path, config: Path) -> None:
    bindir = tmp_path / "bin"
    bindir.mkdir()
    (bindir / "mailq").symlink_to(MAILWRIGHT)
    done = subprocess.run(
        [str(bindir / "mailq"), "-c", str(config)], capture_output=True, text=True, timeout=60
    )
    assert (done.returncode, done.stdout) == (0, "Mail queue is empty\n")
    assert run("-bp", config=config).stdout == b"Mail queue is empty\n"


def one_line(done: subprocess.CompletedProcess[bytes], status: int) -> str:
    assert done.returncode == status, done
    lines = done.stderr.decode().strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("sendmail: "), done.stderr
    return lines[0]


@pytest.mark.parametrize(
    ("args", "stdin", "status", "words"),
    [
        ((), b"Subject: x\n\nno recipient\n", sm.EX_USAGE, "no recipients"),
        (("-t",), b"Subject: no To\n\nx\n", sm.EX_USAGE, "no recipients"),
        (("-z", "root"), b"x\n", sm.EX_USAGE, "unknown option -z"),
        (("-f",), b"x\n", sm.EX_USAGE, "-f needs a value"),
        (("-bs",), b"", sm.EX_USAGE, "-bs is not supported"),
        (("bad address@",), b"x\n", sm.EX_NOUSER, "recipient 'bad address@'"),
        (("-t",), b"To: <a b@x>\n\nx\n", sm.EX_NOUSER, "recipient"),
        (("root",), b"Subject: x\n\nnul \0 byte\n", sm.EX_DATAERR, "NUL byte"),
    ],
)
def test_sendmail_errors_are_one_line_with_sysexits_status(
    config: Path, args: tuple[str, ...], stdin: bytes, status: int, words: str
) -> None:
    assert words in one_line(run(*args, stdin=stdin, config=config), status)
    assert not (config.parent / "data" / "spool" / "msg").exists() or queued(config) == []


def test_sendmail_config_error_is_ex_config(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("no_such_field = 1\n")
    assert "no_such_field" in one_line(run("root", stdin=b"x\n", config=bad), sm.EX_CONFIG)
    # -C wins over the environment.
    assert run("-C", str(bad), "root", stdin=b"x\n").returncode == sm.EX_CONFIG


def test_sendmail_too_big_is_ex_dataerr(tmp_path: Path) -> None:
    path = tmp_path / "cfg.toml"
    path.write_text(to_toml(config_dict(tmp_path / "data", smtp={"max_message_size": 1000})))
    done = run("root", stdin=b"Subject: big\n\n" + b"x" * 2000 + b"\n", config=path)
    assert "too big" in one_line(done, sm.EX_DATAERR)


def test_sendmail_spool_that_cannot_be_created_is_ex_cantcreat(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("not a folder")
    path = tmp_path / "cfg.toml"
    path.write_text(to_toml(config_dict(tmp_path / "file" / "data")))
    line = one_line(run("root", stdin=b"x\n", config=path), sm.EX_CANTCREAT)
    assert str(tmp_path / "file" / "data" / "spool") in line


@pytest.mark.skipif(os.geteuid() != 0, reason="switching to [process] user needs root")
def test_sendmail_unwritable_spool_is_ex_noperm_as_the_process_user(tmp_path: Path) -> None:
    """Run as root with ``[process] user``, sendmail acts as that user: a data folder
    it may not write is EX_NOPERM, naming the folder — never a root-owned file in
    the server's spool."""
    data = tmp_path / "data"
    data.mkdir(mode=0o755)  # root's
    path = tmp_path / "cfg.toml"
    path.write_text(to_toml(config_dict(data, extra={"process": {"user": "nobody"}})))
    line = one_line(run("root", stdin=b"x\n", config=path), sm.EX_NOPERM)
    assert str(data / "spool") in line and "Permission denied" in line
    assert list(data.iterdir()) == []
