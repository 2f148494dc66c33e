"""``[[tls_policy]]`` as an operator writes it: accepted values normalised, mistakes
reported by ``mailwright check-config`` one line each with exit status 2."""

from __future__ import annotations

from pathlib import Path

from click.testing import CliRunner

from mailwright.cli.main import cli
from mailwright.config import load_config

EXIT_CONFIG = 2


def test_tls_policy_entries_are_normalised(tmp_path: Path) -> None:
    path = tmp_path / "mailwright.toml"
    path.write_text('[[tls_policy]]\ndomain = "Example.ORG."\nmode = "verify"\n')
    (entry,) = load_config(path).tls_policies
    assert (entry.domain, entry.mode) == ("example.org", "verify")


def test_check_config_names_bad_tls_policies(tmp_path: Path) -> None:
    path = tmp_path / "mailwright.toml"
    path.write_text(
        '[[tls_policy]]\ndomain = "a.example"\nmode = "secure"\n'
        '[[tls_policy]]\ndomain = ""\nmode = "may"\n'
    )
    done = CliRunner().invoke(cli, ["check-config", str(path)])
    assert done.exit_code == EXIT_CONFIG
    assert done.output.splitlines() == [
        f"mailwright: {path}: tls_policy.0.mode: must be 'none', 'may', 'encrypt' or "
        "'verify', not 'secure'",
        f"mailwright: {path}: tls_policy.1.domain: domain name is empty or longer than 255 octets",
    ]


def test_check_config_refuses_two_policies_for_one_domain(tmp_path: Path) -> None:
    path = tmp_path / "mailwright.toml"
    path.write_text(
        '[[tls_policy]]\ndomain = "a.example"\nmode = "encrypt"\n'
        '[[tls_policy]]\ndomain = "A.example."\nmode = "none"\n'
    )
    done = CliRunner().invoke(cli, ["check-config", str(path)])
    assert done.exit_code == EXIT_CONFIG
    assert done.output.splitlines() == [
        f"mailwright: {path}: tls_policy: domain a.example has more than one tls_policy"
    ]
