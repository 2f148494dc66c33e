"""``mailwright mx``: DNS answers from ``LoopbackDns`` zones, checks against loopback
mailwright servers (a trustme certificate for the MX name; one for another name; one
without STARTTLS) and an MTA-STS policy server on loopback.

The command runs in-process through click's runner (the servers run in threads of
this process, so the DNS guard still sees any query to the system resolver).  Human
output is compared with golden text, volatile parts (milliseconds, ports, dates,
trustme's random CA names) masked; ``--json`` is parsed back and checked field by field.
"""

from __future__ import annotations

import hashlib
import json
import re
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import trustme
from click.testing import CliRunner, Result
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from helpers.dnsserver import LoopbackDns, MakeDns
from helpers.fixtures import MakeServer
from helpers.mtasts_env import PolicyServer
from helpers.servers import InProcessServer
from mailwright.cli.mx import mx

MX = "mx.example.test"
SOA = "@ IN SOA ns hostmaster 1 3600 600 86400 60"


def zone(*records: str, origin: str = "example.test") -> str:
    return "\n".join([f"$ORIGIN {origin}.", "$TTL 300", SOA, *records]) + "\n"


def run_mx(dns: LoopbackDns, *args: str) -> Result:
    return CliRunner().invoke(mx, [*args, "--dns", dns.nameserver, "--timeout", "5"])


def masked(text: str) -> str:
    text = re.sub(r"\d+(?:\.\d+)? ms", "N ms", text)
    text = re.sub(r"\]:\d+", "]:PORT", text)
    text = re.sub(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", "DATE", text)
    text = re.sub(r"(subject|issuer) +.*", r"\1 MASKED", text)
    return text


# -- DNS only --------------------------------------------------------------------------


PREFERENCES = zone(
    "@ IN MX 20 mx2",
    "@ IN MX 10 mx1",
    "@ IN MX 30 mx3",
    "mx1 IN A 192.0.2.1",
    "mx1 IN AAAA 2001:db8::1",
    "mx2 IN A 192.0.2.2",
    "mx2 IN A 192.0.2.3",
    'mx3 IN TXT "no address here"',
)

GOLDEN_PREFERENCES = """\
Domain   example.test
DNSSEC   not authenticated
     10  mx1.example.test
         192.0.2.1
         2001:db8::1
     20  mx2.example.test
         192.0.2.2
         192.0.2.3
     30  mx3.example.test
         no A/AAAA records
Problems
  - mx3.example.test: no A/AAAA records
"""


def test_mx_hosts_by_preference_with_addresses(loopback_dns: MakeDns) -> None:
    dns = loopback_dns(PREFERENCES)
    result = run_mx(dns, "example.test")
    assert result.output == GOLDEN_PREFERENCES
    assert result.exit_code == 1  # mx3 has no address: a problem worth a status


def test_json_is_parsed_back(loopback_dns: MakeDns) -> None:
    dns = loopback_dns(PREFERENCES)
    result = run_mx(dns, "EXAMPLE.test.", "--json")
    doc = json.loads(result.output)
    assert doc["domain"] == "example.test" and doc["exists"] is True
    assert [(h["preference"], h["host"]) for h in doc["hosts"]] == [
        (10, "mx1.example.test"),
        (20, "mx2.example.test"),
        (30, "mx3.example.test"),
    ]
    assert doc["hosts"][0]["ipv4"] == ["192.0.2.1"]
    assert doc["hosts"][0]["ipv6"] == ["2001:db8::1"]
    assert doc["hosts"][1]["ipv4"] == ["192.0.2.2", "192.0.2.3"]
    assert (doc["null_mx"], doc["implicit_mx"], doc["dnssec_authenticated"]) == (
        False,
        False,
        False,
    )
    assert doc["checks"] is None and doc["mta_sts"] is None
    assert doc["problems"] == ["mx3.example.test: no A/AAAA records"]
    assert result.exit_code == 1


def test_dnssec_status_from_the_ad_bit(loopback_dns: MakeDns) -> None:
    records = ("@ IN MX 10 mx", "mx IN A 192.0.2.1")
    signed = loopback_dns(zone(*records), authentic=["example.test"])
    result = run_mx(signed, "example.test")
    assert "DNSSEC   authenticated (AD bit set)" in result.output
    assert result.exit_code == 0
    assert json.loads(run_mx(signed, "example.test", "--json").output)["dnssec_authenticated"]
    unsigned = loopback_dns(zone(*records))
    assert "DNSSEC   not authenticated" in run_mx(unsigned, "example.test").output


def test_implicit_mx_is_called_out(loopback_dns: MakeDns) -> None:
    dns = loopback_dns(zone("@ IN A 192.0.2.9", '@ IN TXT "v=spf1 -all"'))
    result = run_mx(dns, "example.test")
    assert result.output == (
        "Domain   example.test\n"
        "MX       none: implicit MX, mail goes to the domain's own address\n"
        "         (RFC 5321 §5.1)\n"
        "DNSSEC   not authenticated\n"
        "      0  example.test\n"
        "         192.0.2.9\n"
        "Problems none\n"
    )
    assert result.exit_code == 0
    doc = json.loads(run_mx(dns, "example.test", "--json").output)
    assert doc["implicit_mx"] is True and doc["hosts"][0]["host"] == "example.test"


def test_no_mx_and_no_address_is_no_mail_host(loopback_dns: MakeDns) -> None:
    dns = loopback_dns(zone('@ IN TXT "nothing"'))
    result = run_mx(dns, "example.test")
    assert "MX       none, and no address: the domain has no mail host" in result.output
    assert result.exit_code == 1


def test_null_mx_is_called_out(loopback_dns: MakeDns) -> None:
    dns = loopback_dns(zone("@ IN MX 0 ."))
    result = run_mx(dns, "example.test")
    assert result.output == (
        "Domain   example.test\n"
        'MX       null MX ("0 ."): the domain accepts no mail (RFC 7505)\n'
        "DNSSEC   not authenticated\n"
        "Problems\n"
        "  - example.test publishes a null MX: it accepts no mail (RFC 7505)\n"
    )
    assert result.exit_code == 1
    assert json.loads(run_mx(dns, "example.test", "--json").output)["null_mx"] is True


def test_nxdomain(loopback_dns: MakeDns) -> None:
    dns = loopback_dns(zone("@ IN MX 10 mx", "mx IN A 192.0.2.1"))
    result = run_mx(dns, "nowhere.example.test")
    assert "MX       the domain does not exist (NXDOMAIN)" in result.output
    assert "  - nowhere.example.test does not exist (NXDOMAIN)" in result.output
    assert result.exit_code == 1
    doc = json.loads(run_mx(dns, "nowhere.example.test", "--json").output)
    assert doc["exists"] is False and doc["hosts"] == []


def test_dns_failure_is_reported_not_raised(loopback_dns: MakeDns) -> None:
    dns = loopback_dns(zone("@ IN MX 10 mx"), servfail=["example.test"])
    result = run_mx(dns, "example.test")
    assert result.exit_code == 1
    assert "MX       lookup failed:" in result.output
    assert "Traceback" not in result.output


def test_idn_shown_both_ways(loopback_dns: MakeDns) -> None:
    dns = loopback_dns(
        zone("@ IN MX 10 xn--ml-via", "xn--ml-via IN A 192.0.2.7", origin="xn--bcher-kva.test")
    )
    result = run_mx(dns, "bücher.test")
    assert result.output.splitlines()[:4] == [
        "Domain   bücher.test (xn--bcher-kva.test)",
        "DNSSEC   not authenticated",
        "     10  mäl.bücher.test (xn--ml-via.xn--bcher-kva.test)",
        "         192.0.2.7",
    ]
    assert result.exit_code == 0
    doc = json.loads(run_mx(dns, "xn--bcher-kva.test", "--json").output)
    assert (doc["domain"], doc["unicode_domain"]) == ("xn--bcher-kva.test", "bücher.test")
    assert doc["hosts"][0]["unicode_host"] == "mäl.bücher.test"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["bad..name"], "mailwright: mx: 'bad..name' is not a valid domain name"),
        (["example.test", "--dns", "ns.example"], "mailwright: mx: --dns: nameserver 'ns.example'"),
        (["example.test", "--dns", "127.0.0.1:99999"], "port must be 1-65535"),
    ],
)
def test_usage_errors_are_one_line_exit_2(args: list[str], message: str) -> None:
    result = CliRunner().invoke(mx, args)
    assert result.exit_code == 2
    assert message in result.stderr
    assert len(result.stderr.splitlines()) == 1
    assert result.stdout == ""


def test_help_reads_like_a_man_page() -> None:
    result = CliRunner().invoke(mx, ["--help"])
    assert result.exit_code == 0
    for heading in ("Usage: mx [OPTIONS] DOMAIN", "With --check", "Examples:", "Exit status:"):
        assert heading in result.output
    assert "mailwright mx example.org --dns 9.9.9.9 --check" in result.output


# -- --check against loopback servers ----------------------------------------------------


@pytest.fixture
def ca() -> trustme.CA:
    return trustme.CA()


def tls_server(
    make_server: MakeServer, tmp_path: Path, ca: trustme.CA, *names: str
) -> tuple[InProcessServer, bytes]:
    """A mailwright server whose STARTTLS certificate is ``ca``'s for ``names``; the
    leaf as DER (for TLSA records)."""
    leaf = ca.issue_cert(*names)
    cert, key = tmp_path / f"{names[0]}.crt", tmp_path / f"{names[0]}.key"
    leaf.cert_chain_pems[0].write_to_path(str(cert))
    leaf.private_key_pem.write_to_path(str(key))
    tls = {"certificates": [{"cert": str(cert), "key": str(key)}]}
    server = make_server(extra={"tls": tls})
    der = x509.load_pem_x509_certificate(leaf.cert_chain_pems[0].bytes()).public_bytes(Encoding.DER)
    return server, der


def ca_file(tmp_path: Path, ca: trustme.CA) -> str:
    path = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(path))
    return str(path)


GOLDEN_GOOD = """\
Domain   example.test
DNSSEC   authenticated (AD bit set)
     10  mx.example.test
         127.0.0.1
Check    mx.example.test [127.0.0.1]:PORT
  banner   connect N ms, banner N ms
           220 mx.example.test ESMTP mailwright
  STARTTLS offered, TLSv1.3
  cert     valid
           subject MASKED
           issuer MASKED
           names   mx.example.test
           expires DATE
  TLSA     1 record(s), DNSSEC-authenticated
           1 DANE-EE: the certificate matches
MTA-STS
  record   not published
Problems none
"""


def test_check_well_configured_server(
    make_server: MakeServer, loopback_dns: MakeDns, tmp_path: Path, ca: trustme.CA
) -> None:
    server, der = tls_server(make_server, tmp_path, ca, MX)
    digest = hashlib.sha256(der).hexdigest()
    dns = loopback_dns(
        zone("@ IN MX 10 mx", "mx IN A 127.0.0.1", f"_25._tcp.mx IN TLSA 3 0 1 {digest}"),
        authentic=["example.test"],
    )
    port = str(server.ports["inbound"])
    args = ["example.test", "--check", "--port", port, "--ca", ca_file(tmp_path, ca)]
    result = run_mx(dns, *args)
    assert masked(result.output) == GOLDEN_GOOD, result.output
    assert result.exit_code == 0
    doc = json.loads(run_mx(dns, *args, "--json").output)
    [check] = doc["checks"]
    assert check["host"] == MX and check["port"] == int(port)
    assert check["banner"].startswith("220 ") and check["banner_ms"] >= 0
    assert check["starttls"] is True and check["tls_version"] in ("TLSv1.2", "TLSv1.3")
    assert check["certificate"]["valid"] is True and check["certificate"]["names"] == [MX]
    assert check["tlsa"]["records"] == [f"3 0 1 {digest}"]
    assert (check["tlsa"]["authenticated"], check["tlsa"]["matches"]) == (True, True)
    assert doc["mta_sts"]["published"] is False
    assert doc["problems"] == []


def test_check_certificate_for_another_name(
    make_server: MakeServer, loopback_dns: MakeDns, tmp_path: Path, ca: trustme.CA
) -> None:
    server, _der = tls_server(make_server, tmp_path, ca, "other.example.net")
    wrong = hashlib.sha256(b"not this certificate").hexdigest()
    dns = loopback_dns(
        zone("@ IN MX 10 mx", "mx IN A 127.0.0.1", f"_25._tcp.mx IN TLSA 3 0 1 {wrong}"),
        authentic=["example.test"],
    )
    port = str(server.ports["inbound"])
    args = ["example.test", "--check", "--port", port, "--ca", ca_file(tmp_path, ca)]
    result = run_mx(dns, *args)
    assert result.exit_code == 1
    out = masked(result.output)
    assert "  cert     NOT valid: certificate does not match mx.example.test" in out
    assert "           names   other.example.net" in out
    assert "  - mx.example.test: certificate not valid for mx.example.test:" in out
    assert "  - mx.example.test: TLSA does not match the certificate:" in out
    doc = json.loads(run_mx(dns, *args, "--json").output)
    [check] = doc["checks"]
    assert check["certificate"]["valid"] is False
    assert check["certificate"]["names"] == ["other.example.net"]
    assert check["tlsa"]["matches"] is False


def test_check_untrusted_certificate(
    make_server: MakeServer, loopback_dns: MakeDns, tmp_path: Path, ca: trustme.CA
) -> None:
    server, _der = tls_server(make_server, tmp_path, ca, MX)
    dns = loopback_dns(zone("@ IN MX 10 mx", "mx IN A 127.0.0.1"))
    port = str(server.ports["inbound"])
    # No --ca: the trustme CA is not trusted, so the chain does not verify.
    result = run_mx(dns, "example.test", "--check", "--port", port)
    assert result.exit_code == 1
    assert "  cert     NOT valid: " in result.output
    assert "certificate verify failed" in result.output
    assert "           names   mx.example.test" in result.output


def test_check_server_without_starttls(make_server: MakeServer, loopback_dns: MakeDns) -> None:
    server = make_server(extra={"tls": {"self_signed": False}})
    dns = loopback_dns(zone("@ IN MX 10 mx", "mx IN A 127.0.0.1"))
    result = run_mx(dns, "example.test", "--check", "--port", str(server.ports["inbound"]))
    assert result.exit_code == 1
    out = result.output
    assert "  STARTTLS not offered" in out
    assert "  TLSA     no TLSA records at _25._tcp.mx.example.test" in out
    assert "  - mx.example.test: STARTTLS not offered: mail to it travels in clear text" in out
    doc = json.loads(
        run_mx(
            dns, "example.test", "--check", "--port", str(server.ports["inbound"]), "--json"
        ).output
    )
    assert doc["checks"][0]["starttls"] is False and doc["checks"][0]["certificate"] is None


def test_check_nothing_listening(loopback_dns: MakeDns, tmp_path: Path) -> None:
    with socket.socket() as placeholder:  # a port that is certainly closed
        placeholder.bind(("127.0.0.1", 0))
        port = placeholder.getsockname()[1]
    dns = loopback_dns(zone("@ IN MX 10 mx", "mx IN A 127.0.0.1"))
    result = run_mx(dns, "example.test", "--check", "--port", str(port))
    assert result.exit_code == 1
    assert f"  - mx.example.test: cannot connect to [127.0.0.1]:{port}:" in result.output


def sts_case(body: str) -> dict[str, object]:
    return {
        "domain": "example.test",
        "policy": {
            "status": 200,
            "content_type": "text/plain",
            "body": body,
            "cert_names": ["mta-sts.example.test"],
        },
    }


@pytest.mark.parametrize(
    ("patterns", "mode", "covered"),
    [
        (["*.example.test"], "enforce", True),
        (["mx.example.test"], "testing", True),
        (["mx.example.org"], "enforce", False),
    ],
)
def test_check_mta_sts_policy_against_the_mx_list(
    make_server: MakeServer,
    loopback_dns: MakeDns,
    tmp_path: Path,
    ca: trustme.CA,
    patterns: list[str],
    mode: str,
    covered: bool,
) -> None:
    server, _der = tls_server(make_server, tmp_path, ca, MX)
    mx_lines = "".join(f"mx: {p}\r\n" for p in patterns)
    body = f"version: STSv1\r\nmode: {mode}\r\n{mx_lines}max_age: 86400\r\n"
    dns = loopback_dns(
        zone(
            "@ IN MX 10 mx",
            "mx IN A 127.0.0.1",
            '_mta-sts IN TXT "v=STSv1; id=20261205"',
            "mta-sts IN A 127.0.0.1",
        )
    )
    with PolicyServer([sts_case(body)], ca) as policy_server:
        args = [
            "example.test",
            "--check",
            "--port",
            str(server.ports["inbound"]),
            "--ca",
            ca_file(tmp_path, ca),
            "--mta-sts-port",
            str(policy_server.port),
        ]
        result = run_mx(dns, *args)
        doc = json.loads(run_mx(dns, *args, "--json").output)
    assert "  record   v=STSv1; id=20261205" in result.output
    assert f"  policy   mode {mode}, max_age 86400" in result.output
    sts = doc["mta_sts"]
    assert (sts["published"], sts["id"], sts["mode"], sts["mx"]) == (
        True,
        "20261205",
        mode,
        patterns,
    )
    if covered:
        assert "  covers   every MX host" in result.output
        assert sts["uncovered"] == [] and result.exit_code == 0
    else:
        assert "  covers   not mx.example.test" in result.output
        assert sts["uncovered"] == [MX] and result.exit_code == 1
        assert "MTA-STS: policy (enforce) does not cover mx.example.test" in result.output


def test_check_mta_sts_record_without_a_policy(
    make_server: MakeServer, loopback_dns: MakeDns, tmp_path: Path, ca: trustme.CA
) -> None:
    server, _der = tls_server(make_server, tmp_path, ca, MX)
    dns = loopback_dns(
        zone(
            "@ IN MX 10 mx",
            "mx IN A 127.0.0.1",
            '_mta-sts IN TXT "v=STSv1; id=1"',
            "mta-sts IN A 127.0.0.1",
        )
    )
    with PolicyServer([sts_case("version: STSv1\r\nmode: enforce\r\n")], ca) as policy_server:
        result = run_mx(
            dns,
            "example.test",
            "--check",
            "--port",
            str(server.ports["inbound"]),
            "--ca",
            ca_file(tmp_path, ca),
            "--mta-sts-port",
            str(policy_server.port),
        )
    assert result.exit_code == 1
    assert "  - MTA-STS: TXT record published but no valid policy at mta-sts.example.test:" in (
        result.output
    )


def test_registered_on_the_mailwright_command(loopback_dns: MakeDns) -> None:
    dns = loopback_dns(zone("@ IN MX 10 mx", "mx IN A 192.0.2.1"))
    done = subprocess.run(
        [sys.executable, "-m", "mailwright", "mx", "example.test", "--dns", dns.nameserver],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[2:4] == ["     10  mx.example.test", "         192.0.2.1"]
    assert dns.asked("example.test", "MX") == 1
