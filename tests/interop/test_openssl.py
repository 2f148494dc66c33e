"""``openssl s_client`` against ``mailwright serve`` with configured certificates.

Certificates come from a trustme CA: ``mx.example.test`` (listed first: the default)
and ``mail.other.test``.  s_client verifies the chain and the host name against the
CA (``Verify return code: 0``), and the test compares the certificate it printed with
the file the server was configured with, for STARTTLS (``-starttls smtp``), implicit
TLS (``-connect`` to the submissions port), and SNI (``-servername``).

SIGHUP: the certificate files are replaced and the server is sent SIGHUP; a new
connection gets the new certificate while a TLS session opened before the reload goes
on and submits a message.  A broken replacement keeps the old certificate serving.
The same holds with session processes (``smtp.processes``), which reload on the
server's word.
"""

from __future__ import annotations

import os
import re
import signal
import ssl
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import trustme
from cryptography import x509
from cryptography.hazmat.primitives import hashes

from helpers.secure import TlsSMTP, secure_extra
from helpers.servers import EXAMPLE, SubprocessServer
from helpers.tools import require_tool
from helpers.wire import message, queue_id_of

pytestmark = pytest.mark.interop

DEFAULT_NAME = "mx.example.test"
OTHER_NAME = "mail.other.test"
PEM_RE = re.compile(rb"-----BEGIN CERTIFICATE-----.+?-----END CERTIFICATE-----\n?", re.S)


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


def write_leaf(ca: trustme.CA, directory: Path, stem: str, name: str) -> tuple[Path, Path, bytes]:
    """Issue a leaf for ``name``; write ``stem.crt``/``stem.key`` atomically (rename)."""
    leaf = ca.issue_cert(name, common_name=name)
    cert, key = directory / f"{stem}.crt", directory / f"{stem}.key"
    for path, data in (
        (key, leaf.private_key_pem.bytes()),
        (cert, b"".join(blob.bytes() for blob in leaf.cert_chain_pems)),
    ):
        tmp = path.with_suffix(".tmp")
        tmp.write_bytes(data)
        os.replace(tmp, path)
    return cert, key, leaf.cert_chain_pems[0].bytes()


def fingerprint(pem: bytes) -> bytes:
    return x509.load_pem_x509_certificate(pem).fingerprint(hashes.SHA256())


def tls_server(
    ca: trustme.CA, workdir: Path, processes: int = 0
) -> tuple[SubprocessServer, dict[str, bytes]]:
    certs = workdir / "certs"
    certs.mkdir(parents=True)
    default_cert, default_key, default_pem = write_leaf(ca, certs, "mx", DEFAULT_NAME)
    other_cert, other_key, other_pem = write_leaf(ca, certs, "other", OTHER_NAME)
    ca.cert_pem.write_to_path(str(workdir / "ca.pem"))
    tls = {
        "certificates": [
            {"cert": str(default_cert), "key": str(default_key)},
            {"cert": str(other_cert), "key": str(other_key)},
        ]
    }
    server = SubprocessServer(
        workdir, smtp={"processes": processes}, extra=secure_extra(tls=tls)
    ).start()
    return server, {DEFAULT_NAME: default_pem, OTHER_NAME: other_pem}


@pytest.fixture(scope="module")
def served(
    ca: trustme.CA, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[SubprocessServer, dict[str, bytes]]]:
    require_tool("openssl")
    server, pems = tls_server(ca, tmp_path_factory.mktemp("openssl"))
    try:
        yield server, pems
    finally:
        server.terminate()


def s_client(
    server: SubprocessServer, role: str, *, servername: str | None, verify_name: str | None = None
) -> tuple[str, bytes]:
    """Run s_client; returns its output and the PEM of the certificate it was shown."""
    cmd = [
        require_tool("openssl"),
        "s_client",
        "-connect",
        f"{server.host}:{server.ports[role]}",
        "-CAfile",
        str(server.workdir / "ca.pem"),
        "-verify_return_error",
    ]
    if role != "submissions":
        cmd += ["-starttls", "smtp"]
    cmd += ["-servername", servername] if servername else ["-noservername"]
    if verify_name:
        cmd += ["-verify_hostname", verify_name]
    done = subprocess.run(cmd, capture_output=True, timeout=20, stdin=subprocess.DEVNULL)
    out = (done.stdout + done.stderr).decode("utf-8", "replace")
    assert done.returncode == 0, out
    pems = PEM_RE.findall(done.stdout)
    assert pems, out
    return out, pems[0]


@pytest.mark.parametrize("role", ["inbound", "submission", "submissions"])
def test_openssl_shows_configured_certificate(served, role: str):
    server, pems = served
    out, pem = s_client(server, role, servername=DEFAULT_NAME, verify_name=DEFAULT_NAME)
    assert fingerprint(pem) == fingerprint(pems[DEFAULT_NAME])
    assert "Verify return code: 0 (ok)" in out, out
    assert re.search(r"Protocol *: TLSv1\.[23]", out) or "TLSv1.3" in out, out


@pytest.mark.parametrize("role", ["submission", "submissions"])
def test_openssl_sni_picks_the_matching_certificate(served, role: str):
    server, pems = served
    out, pem = s_client(server, role, servername=OTHER_NAME, verify_name=OTHER_NAME)
    assert fingerprint(pem) == fingerprint(pems[OTHER_NAME])
    assert "Verify return code: 0 (ok)" in out, out


@pytest.mark.parametrize("servername", [None, "unknown.example.net"])
def test_openssl_without_matching_sni_gets_the_default_certificate(served, servername):
    server, pems = served
    _, pem = s_client(server, "submission", servername=servername)
    assert fingerprint(pem) == fingerprint(pems[DEFAULT_NAME])


def wait_for_stdout(server: SubprocessServer, text: str, count: int, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while server.stdout().count(text) < count:
        assert time.monotonic() < deadline, f"{text!r} x{count} not announced:\n{server.stdout()}"
        assert server.proc is not None and server.proc.poll() is None, server.stderr()
        time.sleep(0.02)


@pytest.mark.parametrize("processes", [0, 2], ids=["in-process", "session-processes"])
def test_sighup_reloads_certificates_without_dropping_sessions(
    ca: trustme.CA, tmp_path: Path, processes: int
):
    """With session processes the server passes the reload on to each of them."""
    require_tool("openssl")
    server, pems = tls_server(ca, tmp_path / "hup", processes)
    try:
        context = ssl.create_default_context(cafile=str(server.workdir / "ca.pem"))
        old = TlsSMTP(server.host, server.ports["inbound"])
        old.greeting()
        old.ehlo()
        old.starttls(context, server_hostname=DEFAULT_NAME)
        old_der = old.tls.getpeercert(binary_form=True)
        assert fingerprint(ssl.DER_cert_to_PEM_cert(old_der).encode()) == fingerprint(
            pems[DEFAULT_NAME]
        )

        # Replace both files of the default certificate and reload.
        _, _, new_pem = write_leaf(ca, server.workdir / "certs", "mx", DEFAULT_NAME)
        assert server.proc is not None
        server.proc.send_signal(signal.SIGHUP)
        wait_for_stdout(server, "mailwright: certificates reloaded", 1)
        for role in ("submission", "submissions"):
            _, pem = s_client(server, role, servername=DEFAULT_NAME, verify_name=DEFAULT_NAME)
            assert fingerprint(pem) == fingerprint(new_pem), role
        # SNI still works after the reload.
        _, pem = s_client(server, "submission", servername=OTHER_NAME)
        assert fingerprint(pem) == fingerprint(pems[OTHER_NAME])

        # The session opened before the reload goes on, under its old certificate.
        old.ehlo()
        assert old.cmd("MAIL FROM:<sender@remote.test>").code == 250
        assert old.cmd("RCPT TO:<alice@example.test>").code == 250
        assert old.cmd("DATA").code == 354
        reply = old.cmd(message("across a reload") + b"\r\n.")
        assert reply.code == 250, reply
        assert old.tls.getpeercert(binary_form=True) == old_der
        assert old.cmd("QUIT").code == 221
        old.close()
        server.message_with_id(EXAMPLE, "alice", queue_id_of(reply.text))

        # A broken replacement is refused: the last good certificate keeps serving.
        (server.workdir / "certs" / "mx.key").write_bytes(b"not a key\n")
        server.proc.send_signal(signal.SIGHUP)
        wait_for_stdout(server, "mailwright: reload failed, keeping old certificates", 1)
        _, pem = s_client(server, "submission", servername=DEFAULT_NAME)
        assert fingerprint(pem) == fingerprint(new_pem)
    finally:
        server.terminate()
