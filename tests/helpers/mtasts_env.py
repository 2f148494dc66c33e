"""The world of the shared MTA-STS cases (``/work/shared/testdata/mta-sts``, from
postfix-mta-sts-resolver): their DNS and their policy web server, on loopback.

* ``load_cases`` reads ``cases.yaml``; when the folder is absent (a user's clone) the
  caller skips, or fails under ``MAILWRIGHT_REQUIRE_INTEROP=1``.
* ``zone_for`` turns the cases into zone text for ``LoopbackDns``: each case's TXT
  records at ``_mta-sts.<domain>``, and ``mta-sts.<domain>`` at 127.0.0.1 — the cases'
  "every name under .loc resolves to 127.0.0.1".
* ``ServedPolicies`` stands in at the ``PolicyFetcher`` seam (tests about what happens
  around a fetch, not about HTTPS).
* ``PolicyServer`` is a stdlib HTTPS server in a thread that answers each
  ``mta-sts.<domain>`` with the case's status, media type and body (Content-Length, or
  chunked where the case says so), choosing the case's certificate by SNI: trustme
  certificates with the case's SAN list, from a CA the client trusts — except the
  case whose issuer the client must not trust.
"""

from __future__ import annotations

import contextlib
import http.server
import os
import ssl
import threading
from pathlib import Path
from typing import Any

import pytest
import trustme
import yaml

from helpers.tools import REQUIRE_ENV
from mailwright.delivery.tlspolicy.fetch import FetchedPolicy, PolicyFetchError

CASES_DIR = Path(__file__).resolve().parents[3] / "shared" / "testdata" / "mta-sts"
CASES_FILE = CASES_DIR / "cases.yaml"
LOOPBACK = "127.0.0.1"
CHUNK_SIZE = 4096  # how the chunked case's body is cut into chunks


def load_cases() -> dict[str, Any] | None:
    if not CASES_FILE.is_file():
        return None
    document: dict[str, Any] = yaml.safe_load(CASES_FILE.read_text("utf-8"))
    return document


def require_cases() -> dict[str, Any]:
    document = load_cases()
    if document is None:
        reason = f"the shared MTA-STS cases are not here ({CASES_FILE})"
        if os.environ.get(REQUIRE_ENV) == "1":
            pytest.fail(f"{reason}, but {REQUIRE_ENV}=1 requires them", pytrace=False)
        pytest.skip(reason)
    return document


def zone_for(cases: list[dict[str, Any]]) -> str:
    lines = ["$ORIGIN loc.", "$TTL 300", "@ IN SOA ns hostmaster 1 3600 600 86400 60"]
    for case in cases:
        domain = case["domain"]
        for text in case["txt_records"] or ():
            quoted = text.replace("\\", "\\\\").replace('"', '\\"')
            lines.append(f'_mta-sts.{domain}. IN TXT "{quoted}"')
        if "NODATA" in case.get("dns_notes", ""):
            lines.append(f"_mta-sts.{domain}. IN A {LOOPBACK}")
        if case["policy"] is not None:
            lines.append(f"mta-sts.{domain}. IN A {LOOPBACK}")
    return "\n".join(lines) + "\n"


def policy_body(policy: dict[str, Any]) -> bytes:
    if "body" in policy:
        return str(policy["body"]).encode("utf-8")
    filler = policy["body_filler"]
    body = str(policy["body_prefix"]) + str(filler["text"]) * int(filler["repeat"])
    assert len(body) == policy["body_length"]
    return body.encode("utf-8")


class PolicyServer:
    """See the module docstring.  ``requests`` counts GETs per host name."""

    def __init__(self, cases: list[dict[str, Any]], trusted: trustme.CA) -> None:
        self.trusted = trusted
        self.untrusted = trustme.CA()
        self.policies = {
            f"mta-sts.{c['domain']}": c["policy"] for c in cases if c["policy"] is not None
        }
        self.requests: dict[str, int] = {}
        self.contexts = {host: self._context(p) for host, p in self.policies.items()}
        default = next(iter(self.contexts.values()))
        default.sni_callback = self._pick_certificate
        self.httpd = http.server.ThreadingHTTPServer((LOOPBACK, 0), self._handler())
        self.httpd.daemon_threads = True
        self.httpd.socket = default.wrap_socket(self.httpd.socket, server_side=True)
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def _context(self, policy: dict[str, Any]) -> ssl.SSLContext:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        issuer = self.untrusted if "NOT trust" in policy.get("cert_issuer", "") else self.trusted
        issuer.issue_cert(*policy["cert_names"]).configure_cert(context)
        return context

    def _pick_certificate(
        self, sock: ssl.SSLObject | ssl.SSLSocket, name: str | None, _ctx: ssl.SSLContext
    ) -> None:
        if name in self.contexts:
            sock.context = self.contexts[name]

    def _handler(self) -> type[http.server.BaseHTTPRequestHandler]:
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # chunked coding needs it

            def do_GET(self) -> None:
                host = (self.headers.get("Host") or "").lower()
                server.requests[host] = server.requests.get(host, 0) + 1
                policy = server.policies.get(host)
                if policy is None or self.path != "/.well-known/mta-sts.txt":
                    self.send_error(404)
                    return
                body = policy_body(policy)
                self.send_response(int(policy["status"]))
                self.send_header("Content-Type", str(policy["content_type"]))
                self.send_header("Connection", "close")
                if policy.get("transfer_encoding") == "chunked":
                    self.send_header("Transfer-Encoding", "chunked")
                    self.end_headers()
                    self._write_chunked(body)
                else:
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self._write(body)
                self.close_connection = True

            def _write_chunked(self, body: bytes) -> None:
                for start in range(0, len(body), CHUNK_SIZE):
                    chunk = body[start : start + CHUNK_SIZE]
                    self._write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
                self._write(b"0\r\n\r\n")

            def _write(self, data: bytes) -> None:
                # The client may stop reading at its size limit: as it should.
                with contextlib.suppress(OSError):
                    self.wfile.write(data)

            def log_message(self, format: str, *args: Any) -> None:
                pass  # the test asserts on requests, not on stderr

        return Handler

    def __enter__(self) -> PolicyServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(timeout=5)


class ServedPolicies:
    """The ``PolicyFetcher`` seam: answers with ``body`` (or fails), counting calls."""

    def __init__(self, body: bytes) -> None:
        self.body = body
        self.failure: str | None = None
        self.calls = 0

    async def fetch(self, domain: str) -> FetchedPolicy:
        self.calls += 1
        if self.failure is not None:
            raise PolicyFetchError(self.failure)
        return FetchedPolicy(200, "text/plain; charset=utf-8", self.body)
