"""The HTTPS policy fetcher against a raw TLS server on loopback that answers with
exact bytes — the responses a well-behaved web server never sends: redirects, silence,
short bodies, endless headers, broken chunking."""

from __future__ import annotations

import asyncio
import socket
import ssl
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest
import trustme

from mailwright.delivery.tlspolicy.fetch import (
    FetchedPolicy,
    HttpsPolicyFetcher,
    PolicyFetchError,
    check_response,
)
from mailwright.delivery.tlspolicy.mtasts import MAX_POLICY_BYTES

DOMAIN = "example.test"
POLICY = b"version: STSv1\nmode: enforce\nmx: mx.example.test\nmax_age: 86400\n"
SHORT_TIMEOUT = 0.5

Respond = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


def answer(raw: bytes, *, then_close: bool = True) -> Respond:
    async def respond(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(raw)
        await writer.drain()
        if then_close:
            writer.close()
        else:
            await reader.read()  # hold the connection until the client gives up

    return respond


async def _fetch(tmp_path: Path, respond: Respond, connector_extra: int = 0) -> FetchedPolicy:
    ca = trustme.CA()
    ca_file = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert(f"mta-sts.{DOMAIN}").configure_cert(server_ctx)
    requests: list[str] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        requests.append("GET")
        await respond(reader, writer)

    server = await asyncio.start_server(handle, "127.0.0.1", 0, ssl=server_ctx)
    port = server.sockets[0].getsockname()[1]
    dead = [("127.0.0.1", _closed_port()) for _ in range(connector_extra)]

    async def connector(host: str, _port: int) -> list[tuple[str, int]]:
        assert host == f"mta-sts.{DOMAIN}"
        return [*dead, ("127.0.0.1", port)]

    fetcher = HttpsPolicyFetcher(connector, extra_ca_file=ca_file, timeout=SHORT_TIMEOUT)
    try:
        return await fetcher.fetch(DOMAIN)
    finally:
        server.close()
        await server.wait_closed()
        assert len(requests) <= 1  # never a second request (no redirect following)


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def fetch(tmp_path: Path, respond: Respond, connector_extra: int = 0) -> FetchedPolicy:
    return asyncio.run(_fetch(tmp_path, respond, connector_extra))


def fetch_error(tmp_path: Path, respond: Respond) -> str:
    with pytest.raises(PolicyFetchError) as raised:
        check_response(fetch(tmp_path, respond))
    return str(raised.value)


def test_close_delimited_body_and_next_address(tmp_path: Path) -> None:
    head = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n"
    fetched = fetch(tmp_path, answer(head + POLICY), connector_extra=1)
    assert fetched == FetchedPolicy(200, "text/plain; charset=utf-8", POLICY)
    assert check_response(fetched) == POLICY


def test_redirect_is_not_followed(tmp_path: Path) -> None:
    redirect = (
        b"HTTP/1.1 301 Moved Permanently\r\nLocation: https://elsewhere.test/policy\r\n"
        b"Content-Type: text/plain\r\nContent-Length: 0\r\n\r\n"
    )
    assert fetch_error(tmp_path, answer(redirect)) == "HTTP status 301, not 200"


def test_silent_server_times_out(tmp_path: Path) -> None:
    async def silent(reader: asyncio.StreamReader, _writer: asyncio.StreamWriter) -> None:
        await reader.read()

    assert "no complete response within 0.5 s" in fetch_error(tmp_path, silent)


def test_body_shorter_than_its_content_length(tmp_path: Path) -> None:
    raw = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 500\r\n\r\n" + POLICY
    assert "connection closed before the body ended" in fetch_error(tmp_path, answer(raw))


def test_close_delimited_body_over_the_limit(tmp_path: Path) -> None:
    raw = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\n" + b"a" * (MAX_POLICY_BYTES + 1)
    assert f"larger than {MAX_POLICY_BYTES}" in fetch_error(tmp_path, answer(raw))


@pytest.mark.parametrize(
    ("fields", "problem"),
    [
        (b"X-Filler: x\r\n" * 200, "more than 100 header fields"),
        (b"X-Filler: " + b"x" * 1000 + b"\r\n", None),  # one long field is fine
        ((b"X-Filler: " + b"x" * 1000 + b"\r\n") * 20, "response header larger than 16384"),
        (b"X-Filler: " + b"x" * 20000 + b"\r\n", "response line too long"),
    ],
)
def test_header_section_limits(tmp_path: Path, fields: bytes, problem: str | None) -> None:
    raw = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n" + fields + b"\r\n" + POLICY
    if problem is None:
        assert check_response(fetch(tmp_path, answer(raw))) == POLICY
    else:
        assert problem in fetch_error(tmp_path, answer(raw))


@pytest.mark.parametrize("size_line", [b"-5\r\n", b"zz\r\n", b"1_0\r\n"])
def test_broken_chunk_size(tmp_path: Path, size_line: bytes) -> None:
    raw = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nTransfer-Encoding: chunked\r\n\r\n"
    assert "malformed chunk size" in fetch_error(tmp_path, answer(raw + size_line + b"ab\r\n"))


def test_not_http(tmp_path: Path) -> None:
    assert "not an HTTP/1.x response" in fetch_error(tmp_path, answer(b"220 smtp ready\r\n"))
