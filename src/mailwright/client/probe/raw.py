"""A raw SMTP wire for the two probes the core cannot speak for: implicit TLS from the
first octet, and SMTP smuggling, which must put *malformed* end-of-data sequences on
the wire.

The protocol core (``smtp.ClientConnection``) re-frames every body it writes -- bare
CR and LF become CRLF, leading dots are doubled -- precisely so that mailwright can
never send an ambiguous end of data; bending it to do so would remove the defence.
So this module writes the smuggling body itself.  Commands are still written by the
core's ``smtp.write_command``; only the replies are read here, by a small reader that
takes whatever a server sends (the probe must survive a server that answers out of
turn -- that is what it is looking for) and never more than ``MAX_REPLY_LINES`` lines
of ``MAX_REPLY_LINE`` octets each.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl

from mailwright.smtp import Event, Reply, write_command

# RFC 5321 §4.5.3.1.5 gives 512 octets per reply line; real servers send longer EHLO
# and error lines, so the core's reader (smtp._client) takes up to 1000 -- as here.
MAX_REPLY_LINE = 1000
MAX_REPLY_LINES = 100  # the core's limit too: a multiline reply longer than this is broken
# A reply text line kept for display is cut to this many octets (Reply's own limit
# is the line limit minus the code; a probe only shows the text).
SHOWN_TEXT = 400


class RawError(Exception):
    """The connection failed or the server sent something that is not a reply."""


def _valid_enhanced(code: int, token: str) -> bool:
    # RFC 3463 §2: class "." subject "." detail, the class matching the reply's.
    parts = token.split(".")
    return (
        len(parts) == 3
        and all(p.isdigit() and 1 <= len(p) <= 3 for p in parts)
        and parts[0] == str(code // 100)
        and code // 100 in (2, 4, 5)
    )


def parse_reply(code: int, lines: list[str]) -> Reply:
    """The ``Reply`` for ``lines`` (text after the code): enhanced code kept once."""
    first = lines[0].partition(" ")[0]
    enhanced = first if _valid_enhanced(code, first) else ""
    if enhanced:
        lines = [line[len(enhanced) + 1 :] if line.startswith(enhanced) else line for line in lines]
    clean = tuple(line.encode()[:SHOWN_TEXT].decode("utf-8", "ignore") or " " for line in lines)
    return Reply(code, enhanced, clean)


class RawWire:
    """One TCP (or TLS-from-the-start) connection; use ``await RawWire.open(...)``."""

    def __init__(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, timeout: float
    ) -> None:
        self._reader = reader
        self._writer = writer
        self.timeout = timeout

    @classmethod
    async def open(
        cls,
        address: str,
        port: int,
        timeout: float,
        *,
        context: ssl.SSLContext | None = None,
        server_name: str | None = None,
    ) -> RawWire:
        """Connect (and with ``context`` do the TLS handshake at once, RFC 8314 §3).
        OSError/ssl.SSLError/TimeoutError propagate: the caller words them."""
        async with asyncio.timeout(timeout):
            reader, writer = await asyncio.open_connection(
                address,
                port,
                ssl=context,
                server_hostname=server_name if context is not None else None,
                limit=MAX_REPLY_LINE * 2,
            )
        return cls(reader, writer, timeout)

    @property
    def ssl_object(self) -> ssl.SSLObject | None:
        obj = self._writer.get_extra_info("ssl_object")
        return obj if isinstance(obj, ssl.SSLObject) else None

    def write(self, data: bytes) -> None:
        """Exactly these octets, nothing normalised."""
        self._writer.write(data)

    async def command(self, event: Event) -> Reply:
        self._writer.write(write_command(event))
        return await self.reply()

    async def reply(self, timeout: float | None = None) -> Reply:
        """The next reply; RawError on EOF, timeout or a line that is not a reply."""
        lines: list[str] = []
        code = 0
        try:
            async with asyncio.timeout(self.timeout if timeout is None else timeout):
                while True:
                    try:
                        raw = await self._reader.readuntil(b"\n")
                    except asyncio.IncompleteReadError:
                        raise RawError("connection closed by the server") from None
                    except asyncio.LimitOverrunError:
                        raise RawError("reply line too long") from None
                    raw = raw.rstrip(b"\r\n")
                    if len(raw) < 3 or not raw[:3].isdigit() or raw[3:4] not in (b"", b" ", b"-"):
                        raise RawError(f"not a reply line: {raw[:80]!r}")
                    if code and int(raw[:3]) != code:
                        raise RawError("reply lines with different codes")
                    code = int(raw[:3])
                    lines.append(raw[4:].decode("utf-8", "replace"))
                    if len(lines) > MAX_REPLY_LINES:
                        raise RawError("reply with too many lines")
                    if raw[3:4] != b"-":
                        break
        except TimeoutError:
            raise RawError("timed out waiting for a reply") from None
        except (OSError, ssl.SSLError) as exc:
            raise RawError(f"connection failed: {exc}") from None
        if not 200 <= code <= 599:
            raise RawError(f"reply code {code} out of range")
        return parse_reply(code, lines)

    async def close(self) -> None:
        self._writer.close()
        with contextlib.suppress(Exception):
            async with asyncio.timeout(self.timeout):
                await self._writer.wait_closed()
