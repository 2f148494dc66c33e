"""``mailwright user add|passwd|del|list`` end to end.

The main flow, a duplicate add, a password given as an argument, a config error and
the embedded default run as real subprocesses (``python -m mailwright user ...``)
against a real user file.  The remaining error paths run in-process through click's
runner with cheap hashing parameters: argon2 at RFC 9106 strength costs a noticeable
fraction of a second per call, and the wiring is already proven by the subprocesses.
"""

from __future__ import annotations

import os
import pwd
import stat
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from argon2 import PasswordHasher
from click.testing import CliRunner, Result

from mailwright.accounts.users import USERS_FILE, UserStore
from mailwright.cli import user as user_cli
from mailwright.cli.main import cli

PASSWORD = "s3cret-Pa55word"
FAST_HASHER = PasswordHasher(time_cost=1, memory_cost=8, parallelism=1)


@pytest.fixture
def config(tmp_path: Path) -> Path:
    path = tmp_path / "mailwright.toml"
    path.write_text(
        'data_dir = "data"\n\n[[domain]]\nname = "example.com"\nmailboxes = ["alice"]\n'
    )
    return path


def users_file(config: Path) -> Path:
    return config.parent / "data" / USERS_FILE


def fast_store(config: Path) -> UserStore:
    return UserStore(users_file(config), hasher=FAST_HASHER, scram_iterations=4096)


def mw(*args: str, stdin: str = "", cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "mailwright", "user", *args],
        input=stdin,
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=60,
        env={**os.environ, "PYTHONWARNINGS": "ignore"},
    )


def one_line_error(result: subprocess.CompletedProcess[str], code: int = 2) -> str:
    assert result.returncode == code, result
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    return lines[0]


# -- subprocess ------------------------------------------------------------------------


def test_add_list_passwd_del(config: Path) -> None:
    c = ("-c", str(config))
    added = mw(
        "add",
        "Alice@Example.com",
        "--address",
        "a.smith@example.com",
        "--password-stdin",
        *c,
        stdin=PASSWORD + "\n",
    )
    assert added.returncode == 0, added.stderr
    assert added.stdout == "added alice@example.com\n"
    assert stat.S_IMODE(users_file(config).stat().st_mode) == 0o600
    assert PASSWORD.encode() not in users_file(config).read_bytes()

    listed = mw("list", *c)
    assert listed.returncode == 0, listed.stderr
    assert listed.stdout.splitlines() == [
        "alice@example.com  addresses: alice@example.com, a.smith@example.com"
        "  mechanisms: PLAIN LOGIN SCRAM-SHA-256"
    ]
    for secret in (PASSWORD, "argon2", "SCRAM-SHA-256$"):
        assert secret not in listed.stdout + listed.stderr

    changed = mw(
        "passwd",
        "alice@example.com",
        "--cram-md5",
        "--password-stdin",
        *c,
        stdin="new password\r\n",
    )
    assert changed.returncode == 0, changed.stderr
    store = UserStore(users_file(config))
    assert store.verify_password("alice@example.com", "new password")
    assert not store.verify_password("alice@example.com", PASSWORD)
    assert store.cram_secret("alice@example.com") == "new password"
    assert store.get("alice@example.com").mechanisms[-1] == "CRAM-MD5"

    deleted = mw("del", "alice@example.com", *c)
    assert deleted.returncode == 0, deleted.stderr
    assert store.list() == []


def test_duplicate_add_is_one_line_exit_2(config: Path) -> None:
    fast_store(config).add("bob@example.com", "pw")
    # Refused before the password is even read (and hashed).
    line = one_line_error(mw("add", "BOB@example.com", "--password-stdin", "-c", str(config)))
    assert line == "mailwright: user bob@example.com already exists"


def test_password_is_never_an_argument(config: Path) -> None:
    result = mw("add", "dave@example.com", "--password", PASSWORD, "-c", str(config))
    assert result.returncode == 2, result  # click usage error: no such option
    assert "No such option" in result.stderr
    assert not users_file(config).exists()


def test_config_errors_exit_2(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("no_such_setting = 1\n")
    result = mw("list", "-c", str(bad))
    assert result.returncode == 2
    assert "unknown field" in result.stderr


def test_unreadable_users_file_is_one_line_exit_2(config: Path) -> None:
    users_file(config).mkdir(parents=True)  # a directory where the file should be
    line = one_line_error(mw("list", "-c", str(config)))
    assert line.startswith(f"mailwright: cannot read {users_file(config)}: "), line


def _nobody() -> tuple[int, int]:
    account = pwd.getpwnam("nobody")
    return account.pw_uid, account.pw_gid


@pytest.mark.skipif(os.geteuid() != 0, reason="chown to another user needs root")
def test_user_rewrite_keeps_owner_and_mode_of_users_file(config: Path) -> None:
    """The server runs as [process] user; the CLI as root must not take its file away."""
    fast_store(config).add("bob@example.com", "pw")
    path = users_file(config)
    os.chown(path, *_nobody())
    path.chmod(0o640)
    c = ("-c", str(config))
    added = mw("add", "carol@example.com", "--password-stdin", *c, stdin=PASSWORD + "\n")
    assert added.returncode == 0, added.stderr
    deleted = mw("del", "bob@example.com", *c)
    assert deleted.returncode == 0, deleted.stderr
    st = path.stat()
    assert (st.st_uid, st.st_gid) == _nobody()
    assert stat.S_IMODE(st.st_mode) == 0o640
    assert [u.login for u in fast_store(config).list()] == ["carol@example.com"]


@pytest.mark.skipif(os.geteuid() != 0, reason="chown to another user needs root")
def test_new_users_file_belongs_to_the_process_user(tmp_path: Path) -> None:
    config = tmp_path / "mailwright.toml"
    config.write_text('data_dir = "data"\n\n[process]\nuser = "nobody"\n')
    added = mw("add", "erin@localhost", "--password-stdin", "-c", str(config), stdin="pw\n")
    assert added.returncode == 0, added.stderr
    st = users_file(config).stat()
    assert (st.st_uid, st.st_gid) == _nobody()
    assert stat.S_IMODE(st.st_mode) == 0o600


def test_embedded_default_uses_mailwright_data_in_cwd(tmp_path: Path) -> None:
    result = mw("add", "erin@localhost", "--password-stdin", stdin="pw\n", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    users = UserStore(tmp_path / "mailwright-data" / USERS_FILE).list()
    assert [u.login for u in users] == ["erin@localhost"]


# -- in-process ------------------------------------------------------------------------

Invoke = Callable[..., Result]


@pytest.fixture
def invoke(monkeypatch: pytest.MonkeyPatch, config: Path) -> Invoke:
    monkeypatch.setattr(user_cli, "_store", lambda config_path: fast_store(config))
    runner = CliRunner()

    def run(*args: str, stdin: str = "") -> Result:
        return runner.invoke(cli, ["user", *args, "-c", str(config)], input=stdin)

    return run


@pytest.mark.parametrize(
    ("args", "stdin", "message"),
    [
        (("passwd", "nobody@example.com", "--password-stdin"), "pw\n", "no such user"),
        (("del", "nobody@example.com"), "", "no such user"),
        (("add", "carol@example.com", "--password-stdin"), "\n", "empty password"),
        (("add", "carol@example.com", "--password-stdin"), "", "empty password"),
        (("add", "carol", "--password-stdin"), "pw\n", "invalid login"),
        (("add", "carol@example.com", "-a", "x y", "--password-stdin"), "pw\n", "invalid address"),
        (
            ("add", "carol@example.com", "-a", "bob@example.com", "--password-stdin"),
            "pw\n",
            "belongs to bob@example.com",
        ),
        (("add", "carol@example.com", "--password-stdin"), "tab\tpw\n", "SASLprep"),
    ],
)
def test_errors(
    invoke: Invoke, config: Path, args: tuple[str, ...], stdin: str, message: str
) -> None:
    fast_store(config).add("bob@example.com", "pw")
    result = invoke(*args, stdin=stdin)
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], result.stderr
    assert [u.login for u in fast_store(config).list()] == ["bob@example.com"]


@pytest.mark.parametrize(
    "args",
    [
        ("add", "dave@example.com", PASSWORD),
        ("add", "dave@example.com", "-p", PASSWORD),
        ("passwd", "dave@example.com", "--password", PASSWORD),
        ("passwd", "dave@example.com", PASSWORD),
    ],
)
def test_no_password_argument_anywhere(invoke: Invoke, args: tuple[str, ...]) -> None:
    assert invoke(*args, stdin=PASSWORD + "\n").exit_code == 2


def test_prompt_is_hidden_and_confirmed(invoke: Invoke, config: Path) -> None:
    typed = f"{PASSWORD}\nmismatch\n{PASSWORD}\n{PASSWORD}\n"
    result = invoke("add", "frank@example.com", stdin=typed)
    assert result.exit_code == 0, result.output
    assert PASSWORD not in result.output  # hidden input is not echoed
    assert "do not match" in result.output
    assert fast_store(config).verify_password("frank@example.com", PASSWORD)


def test_passwd_keeps_cram_choice_unless_told(invoke: Invoke, config: Path) -> None:
    fast_store(config).add("bob@example.com", "pw", cram_md5=True)
    assert invoke("passwd", "bob@example.com", "--password-stdin", stdin="pw2\n").exit_code == 0
    assert fast_store(config).cram_secret("bob@example.com") == "pw2"
    result = invoke("passwd", "bob@example.com", "--no-cram-md5", "--password-stdin", stdin="x\n")
    assert result.exit_code == 0
    assert fast_store(config).cram_secret("bob@example.com") is None


def test_help_texts(invoke: Invoke) -> None:
    add_help = "".join(invoke("add", "--help").output.split())  # ignore line wrapping
    assert "plaintext-equivalent" in add_help and "--password-stdin" in add_help
    assert "plaintext-equivalent" in "".join(invoke("passwd", "--help").output.split())
    assert {"add", "passwd", "del", "list"} <= set(user_cli.user.commands)
