"""``mailwright user`` against a *running* server: changes take effect at the next
AUTH, without a restart or a signal (the server re-reads users.json when it changes).

The CLI runs as a real subprocess (``python -m mailwright user ... --password-stdin``)
on the same data folder as an in-process server.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from pathlib import Path

from helpers.secure import ALICE, PASSWORD, connect, secure_extra, write_users
from helpers.servers import config_dict, to_toml
from mailwright.accounts.users import users_path

CAROL = "carol@example.test"
NEW_PASSWORD = "N3w-and-impr0ved"


def cli(config: Path, *args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    done = subprocess.run(
        [sys.executable, "-m", "mailwright", "user", *args, "-c", str(config)],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "PYTHONWARNINGS": "ignore"},
    )
    assert done.returncode == 0, done
    return done


def auth_code(server, user: str, password: str) -> int:
    with connect(server, "submission") as c:
        return c.sasl("PLAIN", user, password).code


def test_cli_user_changes_apply_to_a_running_server(make_server, tmp_path: Path):
    extra = secure_extra()
    server = make_server(extra=extra, prepare=write_users)
    config = tmp_path / "mailwright.toml"
    config.write_text(to_toml(config_dict(server.data_dir, extra=extra)), "utf-8")

    assert auth_code(server, CAROL, PASSWORD) == 535
    cli(config, "add", CAROL, "--password-stdin", stdin=PASSWORD + "\n")
    assert auth_code(server, CAROL, PASSWORD) == 235  # at once, no restart
    with connect(server, "submission") as c:  # every mechanism sees the new user
        assert c.sasl("SCRAM-SHA-256", CAROL, PASSWORD).code == 235

    cli(config, "passwd", ALICE, "--password-stdin", stdin=NEW_PASSWORD + "\n")
    assert auth_code(server, ALICE, PASSWORD) == 535
    assert auth_code(server, ALICE, NEW_PASSWORD) == 235

    cli(config, "del", CAROL)
    assert auth_code(server, CAROL, PASSWORD) == 535


class _Lines(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


def test_unreadable_users_file_refuses_every_login_until_fixed(make_server):
    server = make_server(extra=secure_extra(), prepare=write_users)
    path = users_path(server.data_dir)
    assert auth_code(server, ALICE, PASSWORD) == 235
    good = path.read_bytes()
    seen = _Lines()
    logger = logging.getLogger("mailwright.accounts.users")
    logger.addHandler(seen)
    try:
        broken = path.with_name("users.json.new")
        broken.write_text('{"version": 1, "users": ')  # a hand edit gone wrong
        broken.replace(path)
        with connect(server, "submission") as c:
            reply = c.sasl("PLAIN", ALICE, PASSWORD)
        assert (reply.code, reply.enhanced) == (454, "4.7.0"), reply
        assert auth_code(server, ALICE, PASSWORD) == 454  # again: still refused
        for mechanism in ("SCRAM-SHA-256", "LOGIN"):  # every mechanism alike
            with connect(server, "submission") as c:
                assert c.sasl(mechanism, ALICE, PASSWORD).code == 454
        assert len(seen.lines) >= 2, seen.lines  # logged at each attempt
        assert all(f"users file {path} unreadable" in line for line in seen.lines)
    finally:
        logger.removeHandler(seen)
    path.write_bytes(good)
    assert auth_code(server, ALICE, PASSWORD) == 235  # readable again: working again
