"""Fetching an MTA-STS policy: ``GET https://mta-sts.<domain>/.well-known/mta-sts.txt``
(RFC 8461 §3.3), behind an injectable ``PolicyFetcher`` so tests and other transports
can stand in.

The real fetcher is a small HTTP/1.1 client on asyncio + ssl (no HTTP library: the
exchange is one GET with ``Connection: close``):

* the certificate is verified against the system CAs (plus, for tests, one extra CA
  file) for the host name ``mta-sts.<domain>`` — RFC 8461 §3.3 requires a valid PKIX
  certificate for that name;
* redirects are not followed (§3.3: "MUST NOT follow HTTP 3xx redirects"): a 3xx is
  returned like any other status and ``check_response`` refuses it;
* the body is read up to ``MAX_POLICY_BYTES``: a bigger ``Content-Length`` or a longer
  chunked or close-delimited body is an error before the excess is read;
* the whole exchange (connect, handshake, response) has one deadline.

The address to connect to comes from a ``Connector``: ``ResolverConnector`` asks the
project's ``Resolver`` (A, then AAAA), never the system resolver; tests pass one that
points every name at a loopback port.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import ssl
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from mailwright.delivery.tlspolicy.mtasts import MAX_POLICY_BYTES
from mailwright.dns.types import DnsTemporaryError, Resolver

# RFC 8461 §3.3: the policy lives at this path on host "mta-sts.<domain>", port 443.
POLICY_PATH = "/.well-known/mta-sts.txt"
POLICY_HOST_PREFIX = "mta-sts."
HTTPS_PORT = 443
# RFC 8461 §3.3: "200 OK" only; the media type must be text/plain.
OK_STATUS = 200
POLICY_MEDIA_TYPE = "text/plain"
# One deadline for the whole fetch.  RFC 8461 leaves it to the sender; Postfix waits
# 30 s for an SMTP connection (smtp_connect_timeout) and postfix-mta-sts-resolver 4 s
# for the whole fetch; a policy is a few hundred bytes, so 15 s is generous.
FETCH_TIMEOUT = 15.0
# How long to wait for the TLS close exchange once the response is read.
CLOSE_TIMEOUT = 2.0
# Status line and header section bound (h11's default max_incomplete_event_size is
# 16 KiB; a policy response carries a handful of short fields).
MAX_HEADER_BYTES = 16 * 1024
MAX_HEADER_FIELDS = 100
# Chunk-size line bound: hex digits plus extensions, far more than any server sends.
MAX_CHUNK_LINE = 1024
_USER_AGENT = "mailwright-mta-sts"
_HEX = re.compile(rb"[0-9A-Fa-f]{1,16}")


class PolicyFetchError(Exception):
    """The policy could not be fetched (connection, TLS, HTTP, size, timeout)."""


@dataclass(frozen=True, slots=True)
class FetchedPolicy:
    status: int
    content_type: str  # the Content-Type field as sent ("" when absent)
    body: bytes


class PolicyFetcher(Protocol):
    async def fetch(self, domain: str) -> FetchedPolicy:
        """The HTTP response for ``domain``'s policy; raises ``PolicyFetchError``."""
        ...


def check_response(fetched: FetchedPolicy) -> bytes:
    """The policy body if the response may carry a policy (§3.3: status 200, media type
    text/plain, any parameters such as charset allowed); else ``PolicyFetchError``."""
    if fetched.status != OK_STATUS:
        raise PolicyFetchError(f"HTTP status {fetched.status}, not {OK_STATUS}")
    media_type = fetched.content_type.split(";", 1)[0].strip().lower()
    if media_type != POLICY_MEDIA_TYPE:
        shown = media_type[:60] or "none"
        raise PolicyFetchError(f"media type {shown}, not {POLICY_MEDIA_TYPE}")
    if len(fetched.body) > MAX_POLICY_BYTES:
        raise PolicyFetchError(f"policy larger than {MAX_POLICY_BYTES} bytes")
    return fetched.body


# host, port -> the addresses to try, in order.
Connector = Callable[[str, int], Awaitable[list[tuple[str, int]]]]


class ResolverConnector:
    """Addresses of a host from the project's resolver: A records, then AAAA."""

    def __init__(self, resolver: Resolver) -> None:
        self.resolver = resolver

    async def __call__(self, host: str, port: int) -> list[tuple[str, int]]:
        addresses: list[tuple[str, int]] = []
        failure: DnsTemporaryError | None = None
        for lookup in (self.resolver.a, self.resolver.aaaa):
            try:
                answer = await lookup(host)
            except DnsTemporaryError as exc:
                failure = exc
                continue
            addresses.extend((address, port) for address in answer.records)
        if not addresses:
            why = f"address lookup failed: {failure}" if failure else "no address records"
            raise PolicyFetchError(f"{host}: {why}")
        return addresses


class HttpsPolicyFetcher:
    """The real ``PolicyFetcher`` (module docstring)."""

    def __init__(
        self,
        connector: Connector,
        *,
        extra_ca_file: Path | str | None = None,
        timeout: float = FETCH_TIMEOUT,
        port: int = HTTPS_PORT,
    ) -> None:
        self.connector = connector
        self.timeout = timeout
        self.port = port
        self.context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
        # BCP 195 (RFC 8996): nothing older than TLS 1.2.
        self.context.minimum_version = ssl.TLSVersion.TLSv1_2
        if extra_ca_file is not None:
            self.context.load_verify_locations(cafile=str(extra_ca_file))

    async def fetch(self, domain: str) -> FetchedPolicy:
        host = POLICY_HOST_PREFIX + domain.rstrip(".").lower()
        try:
            async with asyncio.timeout(self.timeout):
                return await self._fetch(host)
        except TimeoutError:
            raise PolicyFetchError(
                f"{host}: no complete response within {self.timeout:g} s"
            ) from None
        except ssl.SSLCertVerificationError as exc:
            raise PolicyFetchError(f"{host}: certificate not valid: {exc.verify_message}") from exc
        except asyncio.IncompleteReadError:
            raise PolicyFetchError(f"{host}: connection closed before the body ended") from None
        except ValueError as exc:  # StreamReader.readline: a line above the limit
            raise PolicyFetchError(f"{host}: response line too long: {exc}") from None
        except OSError as exc:  # connection refused/reset, ssl.SSLError
            raise PolicyFetchError(f"{host}: {type(exc).__name__}: {exc}") from exc

    async def _fetch(self, host: str) -> FetchedPolicy:
        reader, writer = await self._connect(host)
        try:
            request = (
                f"GET {POLICY_PATH} HTTP/1.1\r\nHost: {host}\r\n"
                f"User-Agent: {_USER_AGENT}\r\nAccept: {POLICY_MEDIA_TYPE}\r\n"
                "Connection: close\r\n\r\n"
            )
            writer.write(request.encode("ascii"))
            await writer.drain()
            status, fields = await _read_head(reader, host)
            body = await _read_body(reader, fields, host)
            return FetchedPolicy(status, fields.get("content-type", ""), body)
        finally:
            writer.close()
            # The peer may drop the connection without close_notify, or never answer
            # ours: the response is complete, so neither may cost the fetch.
            with contextlib.suppress(OSError, TimeoutError):
                await asyncio.wait_for(writer.wait_closed(), CLOSE_TIMEOUT)

    async def _connect(self, host: str) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        last: OSError | None = None
        for address, port in await self.connector(host, self.port):
            try:
                return await asyncio.open_connection(
                    address,
                    port,
                    ssl=self.context,
                    server_hostname=host,
                    limit=MAX_HEADER_BYTES,
                )
            except ssl.SSLCertVerificationError:
                raise  # another address would serve the same certificate
            except OSError as exc:
                last = exc
        raise PolicyFetchError(f"{host}: could not connect: {last}")


async def _read_head(reader: asyncio.StreamReader, host: str) -> tuple[int, dict[str, str]]:
    """The status code and header fields (names lower case, first value kept)."""
    line = await reader.readline()
    parts = line.decode("latin-1").split(" ", 2)
    if len(parts) < 2 or not parts[0].startswith("HTTP/1.") or not parts[1].isdigit():
        raise PolicyFetchError(f"{host}: not an HTTP/1.x response: {line[:60]!r}")
    status = int(parts[1])
    fields: dict[str, str] = {}
    total = len(line)
    for _ in range(MAX_HEADER_FIELDS + 1):
        line = await reader.readline()
        total += len(line)
        if total > MAX_HEADER_BYTES:
            raise PolicyFetchError(f"{host}: response header larger than {MAX_HEADER_BYTES}")
        if not line.endswith(b"\n"):
            raise PolicyFetchError(f"{host}: connection closed in the response header")
        if line in (b"\r\n", b"\n"):
            return status, fields
        name, colon, value = line.decode("latin-1").partition(":")
        if not colon:
            raise PolicyFetchError(f"{host}: malformed header line {line[:60]!r}")
        fields.setdefault(name.strip().lower(), value.strip())
    raise PolicyFetchError(f"{host}: more than {MAX_HEADER_FIELDS} header fields")


async def _read_body(reader: asyncio.StreamReader, fields: dict[str, str], host: str) -> bytes:
    too_big = f"{host}: policy larger than {MAX_POLICY_BYTES} bytes"
    if "chunked" in fields.get("transfer-encoding", "").lower():
        return await _read_chunked(reader, too_big, host)
    length_field = fields.get("content-length")
    if length_field is not None:
        if not length_field.isdigit():
            raise PolicyFetchError(f"{host}: bad Content-Length {length_field[:30]!r}")
        length = int(length_field)
        if length > MAX_POLICY_BYTES:
            raise PolicyFetchError(f"{too_big} (Content-Length {length})")
        return await reader.readexactly(length)
    body = await reader.read(MAX_POLICY_BYTES + 1)
    while len(body) <= MAX_POLICY_BYTES:
        more = await reader.read(MAX_POLICY_BYTES + 1 - len(body))
        if not more:
            return body
        body += more
    raise PolicyFetchError(too_big)


async def _read_chunked(reader: asyncio.StreamReader, too_big: str, host: str) -> bytes:
    """RFC 9112 §7.1 chunked coding, stopping as soon as the size limit is passed."""
    body = bytearray()
    while True:
        line = await reader.readline()
        if len(line) > MAX_CHUNK_LINE or not line.endswith(b"\n"):
            raise PolicyFetchError(f"{host}: malformed chunk size line")
        size_text = line.split(b";", 1)[0].strip()
        if not _HEX.fullmatch(size_text):
            raise PolicyFetchError(f"{host}: malformed chunk size {size_text[:20]!r}")
        size = int(size_text, 16)
        if size == 0:
            return bytes(body)  # trailer fields are not needed: Connection: close
        if len(body) + size > MAX_POLICY_BYTES:
            raise PolicyFetchError(too_big)
        body += await reader.readexactly(size)
        if await reader.readline() not in (b"\r\n", b"\n"):
            raise PolicyFetchError(f"{host}: chunk not followed by CRLF")
