"""The session's socket: asyncio in, every octet handed to one callback.

The callback gets the octets exactly as they arrive, at once, so the core sees the
plaintext/TLS boundary: after the 220 to STARTTLS it drops input until the handshake
is done, and ``loop.start_tls`` takes the transport over before anything else is read
(what a man in the middle appends to the 220 is never read as a reply from inside TLS,
the client half of CVE-2011-0411).  ``b""`` reports the end of the stream, once.
Writes go straight to the transport: raw mode's octets never pass through the core.
"""

from __future__ import annotations

import asyncio
import os
import ssl
from collections.abc import Callable

from cryptography import x509

from mailwright.net.tls import describe


class ConnectError(Exception):
    """The connection could not be made (refused, timed out, TLS failed)."""


class Wire(asyncio.Protocol):
    def __init__(self, on_data: Callable[[bytes], None]) -> None:
        self._on_data = on_data
        self.transport: asyncio.Transport | None = None
        self._ended = False

    # -- asyncio.Protocol ------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self._on_data(data)

    def eof_received(self) -> bool:
        self._end()
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self._end()

    def _end(self) -> None:
        if not self._ended:
            self._ended = True
            self._on_data(b"")

    # -- the session's side ----------------------------------------------------------

    @property
    def open(self) -> bool:
        return not self._ended and self.transport is not None

    def write(self, data: bytes) -> None:
        if self.open and self.transport is not None:
            self.transport.write(data)

    async def start_tls(
        self, context: ssl.SSLContext, server_hostname: str | None, timeout: float
    ) -> str:
        """The handshake after the 220 to STARTTLS (RFC 3207 §4); the TLS version and
        cipher.  ConnectError if it fails (the connection is then closed)."""
        assert self.transport is not None
        loop = asyncio.get_running_loop()
        try:
            upgraded = await loop.start_tls(
                self.transport,
                self,
                context,
                server_hostname=server_hostname,
                ssl_handshake_timeout=timeout,
            )
        except (OSError, ssl.SSLError, TimeoutError, ConnectionError) as exc:
            self.transport.abort()
            raise ConnectError(f"TLS handshake failed: {exc}") from None
        if upgraded is None:
            raise ConnectError("connection closed during the TLS handshake")
        self.transport = upgraded
        return self.tls_description()

    def tls_description(self) -> str:
        """``TLSv1.3 TLS_AES_256_GCM_SHA384; certificate CN=..., issuer CN=..., valid
        until ...; not verified``: the session does not verify (it shows what the
        server presents, as a tester wants to see a broken certificate too)."""
        obj = self.transport.get_extra_info("ssl_object") if self.transport else None
        if not isinstance(obj, (ssl.SSLObject, ssl.SSLSocket)):
            return ""
        der = obj.getpeercert(binary_form=True)
        if not der:
            return f"{describe(obj)}; no certificate"
        try:
            cert = x509.load_der_x509_certificate(der)
        except ValueError:
            return f"{describe(obj)}; an unreadable certificate"
        return (
            f"{describe(obj)}; certificate {cert.subject.rfc4514_string()}, issuer "
            f"{cert.issuer.rfc4514_string()}, valid until "
            f"{cert.not_valid_after_utc:%Y-%m-%d %H:%M} UTC; not verified"
        )

    def close(self) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.close()


async def connect(
    address: str,
    port: int,
    on_data: Callable[[bytes], None],
    *,
    timeout: float,
    tls: ssl.SSLContext | None = None,
    server_hostname: str | None = None,
) -> Wire:
    """A connected ``Wire``; with ``tls``, TLS from the first octet (RFC 8314 §3)."""
    loop = asyncio.get_running_loop()
    wire = Wire(on_data)
    try:
        async with asyncio.timeout(timeout):
            await loop.create_connection(
                lambda: wire,
                address,
                port,
                ssl=tls,
                server_hostname=server_hostname if tls is not None else None,
            )
    except TimeoutError:
        raise ConnectError(f"no connection within {timeout:g}s") from None
    except ssl.SSLError as exc:
        raise ConnectError(f"TLS handshake failed: {exc}") from None
    except OSError as exc:
        # asyncio words a refusal "Connect call failed ('127.0.0.1', 25)"; the errno's
        # own text ("Connection refused") is the one line a user expects.
        raise ConnectError(os.strerror(exc.errno) if exc.errno else str(exc)) from None
    return wire
