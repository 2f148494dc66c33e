"""From: header matching for authenticated submission (Postfix has no built-in
equivalent; Exim's ``verify = header_sender`` and most providers' submission
servers do it).

Sender-login matching checks the *envelope* sender; the From: header is what the
recipient sees (RFC 5322 §3.6.2), so a user allowed to send could still forge another
user's name there.  With ``from_header_match`` on for a listener, every address in
From: must belong to the authenticated user, or the message is refused at the end of
DATA with 553 5.7.1: ``FromHeaderMatch`` is a hook of the MESSAGE stage.  Only the
header section is read, and only the first ``MAX_HEADER_SECTION`` octets are kept
while the message streams in (``HeaderCollector``, which the session feeds).
"""

from __future__ import annotations

from email.parser import BytesHeaderParser
from email.policy import SMTPUTF8
from email.utils import getaddresses

from mailwright.policy.builtin.submission import AddressOwners
from mailwright.policy.context import SessionContext
from mailwright.policy.message import MessageTransaction
from mailwright.policy.verdict import Reject, Verdict
from mailwright.smtp import codes

# Header sections beyond this are not searched further (RFC 5322 sets no limit; real
# header sections are a few KiB, this bounds the memory a session may hold for it).
MAX_HEADER_SECTION = 64 * 1024


class HeaderCollector:
    """Keeps the header section of a message as its chunks arrive."""

    __slots__ = ("_data", "complete")

    def __init__(self) -> None:
        self._data = bytearray()
        self.complete = False

    def feed(self, chunk: bytes) -> None:
        if self.complete:
            return
        start = max(len(self._data) - 3, 0)
        self._data += chunk[: MAX_HEADER_SECTION - len(self._data)]
        end = self._data.find(b"\r\n\r\n", start)
        if end >= 0:
            del self._data[end + 2 :]
            self.complete = True
        elif len(self._data) >= MAX_HEADER_SECTION:
            self.complete = True

    @property
    def headers(self) -> bytes:
        return bytes(self._data)


def from_addresses(header_section: bytes) -> list[str]:
    message = BytesHeaderParser(policy=SMTPUTF8).parsebytes(header_section)
    values = [str(v) for v in message.get_all("From", [])]
    return [address for _, address in getaddresses(values) if address]


def check_from_header(owners: AddressOwners, login: str, header_section: bytes) -> str | None:
    """None when every From: address belongs to ``login``, else the reason to refuse."""
    addresses = from_addresses(header_section)
    if not addresses:
        return "no address in the From: header"
    for address in addresses:
        if not owners.owns_address(login, address):
            return f"{login} may not send as {address} (From: header)"
    return None


class FromHeaderMatch:
    """The MESSAGE-stage hook: From: addresses owned by the authenticated user."""

    name = "from_header_match"

    def __init__(self, owners: AddressOwners) -> None:
        self._owners = owners

    def on_message(self, ctx: SessionContext, txn: MessageTransaction) -> Verdict | None:
        if ctx.auth_user is None or not ctx.from_header_match:
            return None
        problem = check_from_header(self._owners, ctx.auth_user, txn.header_section)
        if problem is None:
            return None
        return Reject(codes.R553_FROM_NOT_OWNED, problem)
