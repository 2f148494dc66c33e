"""``mailwright probe`` against real ``mailwright serve`` instances, each configured
well or deliberately badly, through the CLI (``--json`` parsed back, exit statuses).

* well configured: a trustme certificate for mx.example.test (checked with ``--ca``
  and ``--tls-name``), AUTH only after TLS, VRFY ambiguous, EXPN off, no relaying, bare
  LF refused; with every check on (implicit TLS, enumeration, relay, smuggling) no
  finding is above "info", and ``--fail-on low`` exits 0;
* an open relay (``relay.trusted_networks`` covering 127.0.0.1: from loopback that IS
  an open relay): ``open-relay``, and still nothing queued (the test never sends DATA);
* AUTH before TLS (a submission listener with ``allow_plaintext_auth``);
* an expired certificate, a certificate for another name, the self-signed default;
* VRFY that confirms users (``smtp.vrfy = "on"``, ``smtp.expn = true``).
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import trustme
from click.testing import CliRunner, Result

from helpers.dnsserver import MakeDns
from helpers.fixtures import MakeServer
from helpers.outbound import free_port
from helpers.secure import listeners, secure_extra, write_users
from helpers.servers import HOST, InProcessServer
from mailwright.cli.main import cli
from mailwright.client.explain import short

NAME = "mx.example.test"
OTHER_NAME = "mail.other.test"
ALICE = "alice@example.test"


def probe(*args: object) -> Result:
    return CliRunner().invoke(cli, ["probe", *map(str, args)], catch_exceptions=False)


def probe_json(*args: object) -> tuple[int, dict[str, Any]]:
    done = probe(*args, "--json", "--timeout", 10)
    assert done.stdout.startswith("{"), (done.exit_code, done.stdout, done.stderr)
    return done.exit_code, json.loads(done.stdout)


def ids(report: dict[str, Any]) -> list[str]:
    return [f["id"] for f in report["findings"]]


def severities(report: dict[str, Any]) -> dict[str, str]:
    return {f["id"]: f["severity"] for f in report["findings"]}


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


def certificate(
    ca: trustme.CA, directory: Path, name: str, *, expired: bool = False, future: bool = False
) -> dict[str, Any]:
    """``extra`` for a server whose only certificate is a leaf for ``name``."""
    dates = {}
    now = datetime.now(UTC)
    if expired:
        dates = {"not_before": now - timedelta(days=60), "not_after": now - timedelta(days=1)}
    if future:
        dates = {"not_before": now + timedelta(days=1), "not_after": now + timedelta(days=90)}
    leaf = ca.issue_cert(name, common_name=name, **dates)
    directory.mkdir(parents=True, exist_ok=True)
    cert, key = directory / "leaf.crt", directory / "leaf.key"
    leaf.private_key_pem.write_to_path(str(key))
    cert.write_bytes(b"".join(blob.bytes() for blob in leaf.cert_chain_pems))
    return {"tls": {"certificates": [{"cert": str(cert), "key": str(key)}], "self_signed": False}}


def ca_file(ca: trustme.CA, tmp_path: Path) -> Path:
    path = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(path))
    return path


def test_well_configured_server_gets_no_finding_above_info(
    make_server: MakeServer, ca: trustme.CA, tmp_path: Path
) -> None:
    server = make_server(
        prepare=write_users,
        extra=secure_extra(**certificate(ca, tmp_path / "certs", NAME)),
    )
    code, report = probe_json(
        f"{HOST}:{server.ports['inbound']}",
        "--tls-name", NAME,
        "--ca", ca_file(ca, tmp_path),
        "--smtps-port", server.ports["submissions"],
        "--user-probe", ALICE,
        "--relay-test",
        "--smuggling-test", "--to", ALICE,
        "--fail-on", "low",
    )  # fmt: skip
    assert code == 0, report
    assert {f["severity"] for f in report["findings"]} <= {"info"}, report["findings"]
    facts = report["facts"]
    assert facts["tls"]["verified"] is True and facts["smtps"]["verified"] is True
    assert facts["tls"]["names"] == [NAME]
    assert facts["auth_before_tls"] == [] and "PLAIN" in facts["auth_after_tls"]
    # Every check ran to its end (nothing skipped behind a note).
    assert report["notes"] == []
    assert facts["enumeration"]["VRFY"].startswith("252")
    assert len(facts["relay_test"]) == 8
    assert all(r.startswith("5") for r in facts["relay_test"].values())
    # Each refusal quoted comes with client.explain's one-line meaning and fix.
    denied = facts["relay_test"]["<relay-probe@example.net>"]
    assert report["reply_notes"][denied] == short(denied) != ""
    assert set(facts["smuggling_test"]) >= {"bare-lf", "cr-dot-crlf", "crlf-dot-lf"}
    assert all("not vulnerable" in r for r in facts["smuggling_test"].values())
    server.assert_nothing_stored()


def test_open_relay_is_reported_and_nothing_is_relayed(make_server: MakeServer) -> None:
    server = make_server(extra={"relay": {"trusted_networks": ["127.0.0.0/8"]}})
    code, report = probe_json(
        f"{HOST}:{server.port}", "--smtps-port", 0, "--relay-test", "--fail-on", "critical"
    )
    assert code == 1
    assert severities(report)["open-relay"] == "critical"
    open_relay = next(f for f in report["findings"] if f["id"] == "open-relay")
    assert "plain foreign recipient <relay-probe@example.net>: 250" in open_relay["detail"]
    assert open_relay["fix"] and open_relay["explanation"]
    server.assert_nothing_stored()  # RCPT then RSET: never DATA


def test_relay_test_only_runs_when_asked(make_server: MakeServer) -> None:
    server = make_server(extra={"relay": {"trusted_networks": ["127.0.0.0/8"]}})
    code, report = probe_json(f"{HOST}:{server.port}", "--smtps-port", 0)
    assert code == 0
    assert "relay_test" not in report["facts"] and "open-relay" not in ids(report)


def test_auth_before_tls_is_reported(make_server: MakeServer) -> None:
    server = make_server(
        prepare=write_users,
        extra=secure_extra(listener=listeners(submission={"allow_plaintext_auth": True})),
    )
    code, report = probe_json(
        f"{HOST}:{server.ports['submission']}", "--smtps-port", 0, "--fail-on", "high"
    )
    assert code == 1
    assert severities(report)["auth-before-tls"] == "high"
    assert "PLAIN" in report["facts"]["auth_before_tls"]


def test_expired_certificate_is_reported(
    make_server: MakeServer, ca: trustme.CA, tmp_path: Path
) -> None:
    server = make_server(extra=certificate(ca, tmp_path / "certs", NAME, expired=True))
    code, report = probe_json(
        f"{HOST}:{server.port}", "--smtps-port", 0, "--tls-name", NAME,
        "--ca", ca_file(ca, tmp_path),
    )  # fmt: skip
    assert code == 0  # no --fail-on: findings alone never fail the run
    assert severities(report)["expired-certificate"] == "high"
    # The chain is trusted (--ca): the date is the one problem, reported once.
    assert "untrusted-certificate" not in ids(report)
    assert "certificate-name-mismatch" not in ids(report)
    assert report["facts"]["tls"]["verified"] is False


def test_certificate_not_yet_valid_is_reported(
    make_server: MakeServer, ca: trustme.CA, tmp_path: Path
) -> None:
    server = make_server(extra=certificate(ca, tmp_path / "certs", NAME, future=True))
    code, report = probe_json(
        f"{HOST}:{server.port}", "--smtps-port", 0, "--tls-name", NAME,
        "--ca", ca_file(ca, tmp_path), "--fail-on", "high",
    )  # fmt: skip
    assert code == 1
    assert severities(report)["certificate-not-yet-valid"] == "high"
    assert not {"expired-certificate", "untrusted-certificate"} & set(ids(report))


def test_certificate_for_another_name_is_reported(
    make_server: MakeServer, ca: trustme.CA, tmp_path: Path
) -> None:
    server = make_server(extra=certificate(ca, tmp_path / "certs", OTHER_NAME))
    code, report = probe_json(
        f"{HOST}:{server.port}", "--smtps-port", 0, "--tls-name", NAME,
        "--ca", ca_file(ca, tmp_path),
    )  # fmt: skip
    assert code == 0
    mismatch = next(f for f in report["findings"] if f["id"] == "certificate-name-mismatch")
    assert mismatch["detail"] == f"STARTTLS: issued for {OTHER_NAME}, not {NAME}"
    assert "untrusted-certificate" not in ids(report)
    assert "expired-certificate" not in ids(report)


def test_self_signed_certificate_is_untrusted(server: InProcessServer) -> None:
    code, report = probe_json(f"{HOST}:{server.port}", "--smtps-port", 0, "--fail-on", "medium")
    assert code == 1
    untrusted = next(f for f in report["findings"] if f["id"] == "untrusted-certificate")
    assert "self-signed" in untrusted["detail"]
    assert report["facts"]["tls"]["self_signed"] is True


def test_vrfy_and_expn_that_confirm_users_are_reported(make_server: MakeServer) -> None:
    server = make_server(smtp={"vrfy": "on", "expn": True})
    code, report = probe_json(
        f"{HOST}:{server.port}", "--smtps-port", 0, "--user-probe", ALICE, "--fail-on", "medium"
    )
    assert code == 1
    found = [f for f in report["findings"] if f["id"] == "user-enumeration"]
    assert found and found[0]["severity"] == "medium"
    assert any(f["detail"].startswith(f"VRFY {ALICE}: 250") for f in found)


def test_human_report_names_findings_with_explanation_and_fix(server: InProcessServer) -> None:
    done = probe(f"{HOST}:{server.port}", "--smtps-port", 0, "--timeout", 10)
    assert done.exit_code == 0, done.stderr
    assert "banner      220 " in done.stdout
    assert "medium   untrusted-certificate: STARTTLS: self-signed certificate" in done.stdout
    assert "why: The certificate chain does not lead to a trusted CA" in done.stdout
    assert "fix: Use a certificate from a public CA" in done.stdout
    expn = "502 5.5.1 EXPN not available"  # the default server's EXPN (smtp.expn off)
    assert f"  replies:\n    {expn}\n      = {short(expn)}\n" in done.stdout


def test_host_name_is_resolved_with_dns_and_checked_against_the_certificate(
    make_server: MakeServer, ca: trustme.CA, tmp_path: Path, loopback_dns: MakeDns
) -> None:
    """A name, not an IP: looked up with --dns (never the system resolver), sent as
    SNI, and the certificate checked against it without --tls-name."""
    server = make_server(extra=certificate(ca, tmp_path / "certs", NAME))
    dns = loopback_dns(f"{NAME}. 300 IN A {HOST}")
    code, report = probe_json(
        f"{NAME}:{server.port}", "--dns", dns.nameserver, "--smtps-port", 0,
        "--ca", ca_file(ca, tmp_path),
    )  # fmt: skip
    assert code == 0
    assert report["target"] == f"{NAME}:{server.port}"
    assert report["facts"]["tls"]["verified"] is True
    assert ids(report) == ["auth-mechanisms"], report["findings"]
    assert (NAME.lower(), "A") in dns.queries
    missing = probe("no-such.example.test", "--dns", dns.nameserver, "--smtps-port", 0)
    assert missing.exit_code == 3
    assert missing.stderr.strip() == (
        "mailwright probe: no-such.example.test: no such domain (NXDOMAIN)"
    )


def test_unreachable_server_exits_3() -> None:
    done = probe(f"{HOST}:{free_port()}", "--smtps-port", 0, "--json", "--timeout", 5)
    assert done.exit_code == 3
    report = json.loads(done.stdout)
    assert "connect failed" in report["failed"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["127.0.0.1", "--fail-on", "severe"], "--fail-on: unknown severity 'severe'"),
        (["127.0.0.1", "--smuggling-test"], "--smuggling-test needs --to ADDRESS"),
        (["127.0.0.1", "--to", ALICE], "--to is for --smuggling-test"),
        (["127.0.0.1:99999"], "port '99999' is not a number from 1 to 65535"),
        (["bad host!"], "'bad host!' is not a host name or IP address"),
        (["[::1"], "write an IPv6 address as [ADDRESS]"),
        (["mx.example.test", "--dns", "dns.example"], "--dns: nameserver 'dns.example'"),
        (["127.0.0.1", "--smuggling-test", "--to", "me"], "--to 'me': "),
        (["127.0.0.1", "--user-probe", "a b@example.test"], "--user-probe 'a b@example.test': "),
        (["127.0.0.1", "--relay-domain", "not a domain"], "--relay-domain 'not a domain' is"),
    ],
)
def test_usage_errors_exit_2_with_one_line(args: list[str], message: str) -> None:
    done = probe(*args)
    assert done.exit_code == 2
    assert done.stdout == ""
    lines = done.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("mailwright probe: "), done.stderr
    assert message in lines[0]


def test_help_reads_like_a_man_page() -> None:
    done = probe("--help")
    assert done.exit_code == 0
    for text in (
        "Exit status:",
        "  3    no SMTP session",
        "Examples:",
        "--relay-test",
        "never",
        "smuggling-bare-lf",
        "--fail-on SEVERITY",
    ):
        assert text in done.stdout, text
