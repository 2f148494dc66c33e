"""Configuration errors as an operator meets them: ``mailwright check-config`` and
``mailwright serve`` on bad files.  Each problem is one line naming the file, the
field and what is wrong; the exit status is 2; there is never a traceback.

The exit statuses are checked on the real command in a subprocess (``python -m
mailwright``), which is what an operator runs; the other cases use click's in-process
runner or ``load_config`` directly, so the messages are pinned without paying about a
second of interpreter start-up for each.
"""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from helpers.servers import to_toml
from mailwright.cli.main import cli
from mailwright.config import ConfigError, load_config

EXIT_CONFIG = 2
GOOD_DOMAIN = '[[domain]]\nname = "example.test"\nmailboxes = ["alice", "bob"]\n'


def mailwright(
    *args: str | Path, cwd: Path | None = None, timeout: float = 20
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "mailwright", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=cwd,
        stdin=subprocess.DEVNULL,
    )


def run_cli(*args: str | Path) -> Result:
    """The same command in-process (click's runner captures exit status and streams)."""
    return CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)


def problems(path: Path) -> list[str]:
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert info.value.source == str(path)
    return info.value.problems


def write(tmp_path: Path, text: str, name: str = "bad.toml") -> Path:
    path = tmp_path / name
    path.write_text(text, "utf-8")
    return path


# (TOML text, field named, words of the problem)
CASES = {
    "unknown-field": (
        "[smtp]\nmax_recipents = 10\n" + GOOD_DOMAIN,
        "smtp.max_recipents",
        "unknown field",
    ),
    "unknown-section": ("[smpt]\nhostname = 'x'\n" + GOOD_DOMAIN, "smpt", "unknown field"),
    "port-too-big": (
        "[[listener]]\nport = 70000\n" + GOOD_DOMAIN,
        "listener.0.port",
        "less than or equal to 65535",
    ),
    "port-not-a-number": (
        '[[listener]]\nport = "smtp"\n' + GOOD_DOMAIN,
        "listener.0.port",
        "must be a whole number, not 'smtp'",
    ),
    "address-not-ip": (
        '[[listener]]\naddress = "localhost"\n' + GOOD_DOMAIN,
        "listener.0.address",
        "'localhost' is not an IP address",
    ),
    "alias-to-remote": (
        GOOD_DOMAIN + 'aliases = { team = ["alice", "x@remote.test"] }\n',
        "domain.0.aliases.team",
        "points to 'x@remote.test', which is not in a local domain",
    ),
    "duplicate-domain": (
        GOOD_DOMAIN + GOOD_DOMAIN.replace("alice", "carol"),
        "domain.1.name",
        "domain listed twice: example.test",
    ),
    "catch-all-not-a-mailbox": (
        GOOD_DOMAIN + 'catch_all = "zed"\n',
        "domain.0.catch_all",
        "catch_all 'zed' is not a mailbox",
    ),
    "negative-size": (
        "[smtp]\nmax_message_size = -1\n" + GOOD_DOMAIN,
        "smtp.max_message_size",
        "greater than 0",
    ),
}


@pytest.mark.parametrize("text,field,problem", CASES.values(), ids=CASES.keys())
def test_each_problem_names_field_and_problem(tmp_path, text, field, problem):
    path = write(tmp_path, text)
    [line] = problems(path)
    assert line.startswith(f"{field}: "), line
    assert problem in line
    assert "\n" not in line


def test_every_problem_is_reported_at_once(tmp_path):
    path = write(
        tmp_path,
        "[smtp]\nbogus = 1\nmax_errors = 0\n\n[[listener]]\nport = 70000\n\n" + GOOD_DOMAIN,
    )
    found = problems(path)
    assert sorted(line.split(":")[0] for line in found) == [
        "listener.0.port",
        "smtp.bogus",
        "smtp.max_errors",
    ]


def test_every_cross_reference_problem_is_reported_at_once(tmp_path):
    path = write(
        tmp_path,
        GOOD_DOMAIN + 'catch_all = "zed"\naliases = { team = ["x@remote.test"] }\n' + GOOD_DOMAIN,
    )
    found = problems(path)
    assert sorted(line.split(":")[0] for line in found) == [
        "domain.0.aliases.team",
        "domain.0.catch_all",
        "domain.1.name",
    ]


def test_check_config_bad_file_exits_2_with_one_line_per_problem(tmp_path):
    path = write(
        tmp_path,
        "[smtp]\nmax_recipents = 10\n\n[[listener]]\nport = 70000\n"
        + GOOD_DOMAIN
        + 'aliases = { team = ["x@remote.test"] }\n',
    )
    done = mailwright("check-config", path)
    assert done.returncode == EXIT_CONFIG, done
    assert done.stdout == ""
    lines = done.stderr.splitlines()
    assert lines == [
        f"mailwright: {path}: listener.0.port: must be less than or equal to 65535, not 70000",
        f"mailwright: {path}: smtp.max_recipents: unknown field",
        f"mailwright: {path}: domain.0.aliases.team: domain example.test: alias 'team' "
        "points to 'x@remote.test', which is not in a local domain",
    ]  # cross-references in the same pass as field errors


def test_cross_reference_errors_come_with_field_errors(tmp_path):
    path = write(tmp_path, '[smtp]\nmax_errors = "many"\n' + GOOD_DOMAIN + 'catch_all = "zed"\n')
    assert problems(path) == [
        "smtp.max_errors: must be a whole number, not 'many'",
        "domain.0.catch_all: domain example.test: catch_all 'zed' is not a mailbox",
    ]


# (TOML text, the whole problem line): no pydantic internals in any of them
PLAIN_CASES = {
    "path": ("data_dir = 5\n", "data_dir: must be a path (a string), not 5"),
    "bool": ('[smtp]\nexpn = "maybe"\n', "smtp.expn: must be true or false, not 'maybe'"),
    "enum": (
        '[smtp]\nvrfy = "yes"\n',
        "smtp.vrfy: must be 'ambiguous', 'on' or 'off', not 'yes'",
    ),
    "table": ("smtp = 3\n", "smtp: must be a table, not 3"),
    "required": ("[[domain]]\nmailboxes = []\n", "domain.0.name: is required"),
    "listener-table": (
        "[listener]\nport = 2600\n",
        "listener: write [[listener]] (an array of tables), not [listener]",
    ),
    "domain-table": (
        '[domain]\nname = "example.test"\n',
        "domain: write [[domain]] (an array of tables), not [domain]",
    ),
}


@pytest.mark.parametrize("text,line", PLAIN_CASES.values(), ids=PLAIN_CASES.keys())
def test_config_errors_are_plain_words(tmp_path, text, line):
    assert problems(write(tmp_path, text)) == [line]


def test_listener_table_instead_of_array_hints_double_brackets(tmp_path):
    path = write(tmp_path, "[listener]\nport = 2600\n" + GOOD_DOMAIN)
    done = mailwright("check-config", path)
    assert done.returncode == EXIT_CONFIG
    assert done.stderr.splitlines() == [
        f"mailwright: {path}: listener: write [[listener]] (an array of tables), not [listener]"
    ]


def test_check_config_reports_a_bad_alias_target(tmp_path):
    path = write(tmp_path, GOOD_DOMAIN + 'aliases = { team = ["x@remote.test"] }\n')
    done = run_cli("check-config", path)
    assert done.exit_code == EXIT_CONFIG
    assert done.stderr.splitlines() == [
        f"mailwright: {path}: domain.0.aliases.team: domain example.test: alias 'team' "
        "points to 'x@remote.test', which is not in a local domain"
    ]


def test_toml_syntax_error_names_line_and_column(tmp_path):
    path = write(tmp_path, GOOD_DOMAIN + "[smtp\nhostname = 'x'\n")
    done = run_cli("check-config", path)
    assert done.exit_code == EXIT_CONFIG
    [line] = done.stderr.splitlines()
    assert line.startswith(f"mailwright: {path}: TOML syntax error: ")
    assert "line 4" in line
    assert "Traceback" not in done.stderr


def test_missing_file(tmp_path):
    path = tmp_path / "nope.toml"
    done = mailwright("check-config", path)
    assert done.returncode == EXIT_CONFIG
    assert done.stderr.splitlines() == [
        f"mailwright: {path}: cannot read file: No such file or directory"
    ]


def test_check_config_without_a_file_checks_the_embedded_default(tmp_path):
    done = mailwright("check-config", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0] == "embedded default: ok"
    assert "  listener 127.0.0.1:2525 (inbound)" in lines
    assert "  domain localhost: 1 mailbox(es), 0 alias(es)" in lines
    assert not (tmp_path / "mailwright-data").exists()  # checking creates nothing


def test_check_config_good_file_prints_a_summary(tmp_path):
    doc = {
        "data_dir": "data",
        "listener": [{"address": "127.0.0.1", "port": 2600}],
        "domain": [
            {
                "name": "example.test",
                "mailboxes": ["alice", "bob"],
                "aliases": {"team": ["alice", "bob"]},
            },
            {"name": "catchall.test", "mailboxes": ["sink"], "catch_all": "sink"},
        ],
    }
    path = write(tmp_path, to_toml(doc), "good.toml")
    done = run_cli("check-config", path)
    assert done.exit_code == 0, done.stderr
    assert done.stdout.splitlines() == [
        f"{path}: ok",
        "  listener 127.0.0.1:2600 (inbound)",
        "  domain example.test: 2 mailbox(es), 1 alias(es)",
        "  domain catchall.test: 1 mailbox(es), 0 alias(es), catch-all sink",
        f"  data in {tmp_path.resolve() / 'data'}",  # relative to the file, not the cwd
    ]


def test_check_config_names_the_session_processes(tmp_path):
    doc = {"data_dir": "data", "smtp": {"processes": 4}, "domain": [{"name": "example.test"}]}
    path = write(tmp_path, to_toml(doc), "processes.toml")
    done = run_cli("check-config", path)
    assert done.exit_code == 0, done.stderr
    assert "  sessions in 4 session processes" in done.stdout.splitlines()


def test_serve_with_a_bad_config_exits_2_without_starting(tmp_path):
    path = write(tmp_path, "[[listener]]\nport = 70000\n" + GOOD_DOMAIN)
    done = mailwright("serve", "-c", path)
    assert done.returncode == EXIT_CONFIG
    assert done.stderr.splitlines() == [
        f"mailwright: {path}: listener.0.port: must be less than or equal to 65535, not 70000"
    ]
    assert "listening" not in done.stdout


def test_serve_on_a_busy_port_gives_one_line_and_no_traceback(tmp_path):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        doc = {
            "data_dir": str(tmp_path / "data"),
            "listener": [{"address": "127.0.0.1", "port": port}],
            "domain": [{"name": "example.test", "mailboxes": ["alice"]}],
            "log": {"mail_log": "mail.log"},
        }
        path = write(tmp_path, to_toml(doc), "busy.toml")
        done = mailwright("serve", "-c", path)
    assert done.returncode == EXIT_CONFIG
    assert "Traceback" not in done.stderr
    [line] = done.stderr.splitlines()
    assert line.startswith("mailwright: cannot start: ")
    assert f"127.0.0.1:{port}" in line or str(port) in line
    assert "address already in use" in line.lower()
