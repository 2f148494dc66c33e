"""``mailwright check-config`` runs the checks ``serve`` runs before binding
(``mailwright.runtime.startup.check``): certificates load, data_dir usable, users file
readable, process user known.  Every problem is reported at once, one line each, exit
status 2; a configuration that starts but refuses mail gets ``warning:`` lines and
exit status 0.  The real command runs in a subprocess, as an operator runs it.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

from helpers.servers import to_toml

EXIT_CONFIG = 2
DOMAIN = {"name": "example.test", "mailboxes": ["postmaster", "alice"]}


def mailwright(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "mailwright", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=30,
        stdin=subprocess.DEVNULL,
    )


def write_config(tmp_path: Path, **doc: Any) -> Path:
    doc = {"data_dir": str(tmp_path / "data"), "domain": [DOMAIN], **doc}
    path = tmp_path / "mailwright.toml"
    path.write_text(to_toml(doc), "utf-8")
    return path


def test_check_config_fails_on_a_missing_certificate(tmp_path: Path) -> None:
    cert = tmp_path / "mx.pem"
    path = write_config(tmp_path, tls={"certificates": [{"cert": str(cert), "key": str(cert)}]})
    done = mailwright("check-config", path)
    assert done.returncode == EXIT_CONFIG, done
    assert done.stderr.splitlines() == [
        f"mailwright: {path}: tls: {cert}: cannot read certificate file: No such file or directory"
    ]
    assert done.stdout == ""


def test_check_config_reports_every_problem_at_once(tmp_path: Path) -> None:
    cert = tmp_path / "mx.pem"
    (tmp_path / "data").write_text("a file\n")
    path = write_config(
        tmp_path,
        tls={"certificates": [{"cert": str(cert), "key": str(cert)}]},
        process={"user": "no-such-mail-user"},
    )
    done = mailwright("check-config", path)
    assert done.returncode == EXIT_CONFIG, done
    assert done.stderr.splitlines() == [
        f"mailwright: {path}: process: unknown user 'no-such-mail-user' (process.user)",
        f"mailwright: {path}: data_dir {tmp_path / 'data'} is not a directory",
        f"mailwright: {path}: tls: {cert}: cannot read certificate file: No such file or directory",
    ]


def test_check_config_fails_on_an_unreadable_users_file(tmp_path: Path) -> None:
    users = tmp_path / "data" / "users.json"
    users.parent.mkdir()
    users.write_text('{"version": 1, "users": ')
    path = write_config(tmp_path)
    done = mailwright("check-config", path)
    assert done.returncode == EXIT_CONFIG, done
    [line] = done.stderr.splitlines()
    assert line.startswith(f"mailwright: {path}: users file: cannot read {users}: "), line


def test_check_config_warns_that_no_domain_refuses_all_mail(tmp_path: Path) -> None:
    path = write_config(tmp_path, domain=[])
    done = mailwright("check-config", path)
    assert done.returncode == 0, done
    assert done.stderr.splitlines() == [
        f"mailwright: {path}: warning: no [[domain]] is configured: every recipient will be "
        "refused with 550 5.7.1 Relay access denied, postmaster included (only "
        "authenticated users and relay.trusted_networks may relay)"
    ]
    assert done.stdout.startswith(f"{path}: ok\n")


def test_check_config_warns_about_a_domain_without_postmaster(tmp_path: Path) -> None:
    path = write_config(tmp_path, domain=[{"name": "example.test", "mailboxes": ["alice"]}])
    done = mailwright("check-config", path)
    assert done.returncode == 0, done
    assert done.stderr.splitlines() == [
        f"mailwright: {path}: warning: domain example.test: no mailbox, alias or catch-all "
        "receives postmaster@example.test (RFC 5321 section 4.5.1 requires one)"
    ]


def test_check_config_and_serve_find_the_same_problem(tmp_path: Path) -> None:
    cert = tmp_path / "mx.pem"
    path = write_config(
        tmp_path,
        listener=[{"address": "127.0.0.1", "port": 0}],
        tls={"certificates": [{"cert": str(cert), "key": str(cert)}]},
    )
    checked = mailwright("check-config", path)
    served = mailwright("serve", "-c", path)
    assert (checked.returncode, served.returncode) == (EXIT_CONFIG, EXIT_CONFIG)
    problem = f"tls: {cert}: cannot read certificate file: No such file or directory"
    assert checked.stderr.splitlines() == [f"mailwright: {path}: {problem}"]
    assert served.stderr.splitlines() == [f"mailwright: cannot start: {problem}"]


def test_check_config_reads_the_relay_password_files(tmp_path: Path) -> None:
    """A smarthost password file that cannot be read is a start-up error naming the
    field, not a deferral of every message at delivery time; an empty one too."""
    (tmp_path / "empty.pw").write_text("")
    missing = tmp_path / "missing.pw"
    path = write_config(
        tmp_path,
        outbound={
            "relayhost": "[smarthost.test]:587",
            "username": "me",
            "password_file": str(missing),
        },
        transport=[
            {
                "domain": "lists.test",
                "nexthop": "smtp:[lists.test]",
                "username": "me",
                "password_file": str(tmp_path / "empty.pw"),
            }
        ],
    )
    done = mailwright("check-config", path)
    assert done.returncode == EXIT_CONFIG, done
    assert done.stderr.splitlines() == [
        f"mailwright: {path}: outbound.password_file: cannot read {missing}: "
        "No such file or directory",
        f"mailwright: {path}: transport.0.password_file: {tmp_path / 'empty.pw'} is empty",
    ]
