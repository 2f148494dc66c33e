"""RFC 5321 §4.1.2 path grammar, with RFC 6531 (SMTPUTF8) and IDNA domains.

    Path        = "<" [ A-d-l ":" ] Mailbox ">"
    Mailbox     = Local-part "@" ( Domain / address-literal )
    Local-part  = Dot-string / Quoted-string
    Domain      = sub-domain *("." sub-domain)

Source routes (A-d-l) must be accepted and ignored (RFC 5321 §4.1.1.3, appendix C);
we keep only the mailbox, which is what defeats the ``@relay:user@target`` relay trick.
The special ``<Postmaster>`` (no domain) is accepted for RCPT (§4.1.1.3).

The parser is a hand-written scanner rather than a regex so that every rejection can
say *what* is wrong and so UTF-8 local parts (RFC 6531 §3.3 extends atext with
UTF8-non-ascii) need no special casing.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from mailwright.smtp.limits import (
    MAX_DOMAIN_LENGTH,
    MAX_LOCAL_PART_LENGTH,
    MAX_PATH_LENGTH,
)

# RFC 5322 §3.2.3 atext: ALPHA / DIGIT and these specials.
_ATEXT_SPECIALS = frozenset("!#$%&'*+-/=?^_`{|}~")
_LDH = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-")
_MAX_LABEL = 63  # RFC 1035 §2.3.4


class AddressError(ValueError):
    """The path is not valid; the message says why (it is shown to the peer)."""


@dataclass(frozen=True, slots=True)
class Address:
    """A mailbox.  ``domain`` is lower-cased; U-labels are kept as received and
    ``ascii_domain`` gives the A-label form used for DNS and routing."""

    local_part: str
    domain: str  # "" only for the special RCPT TO:<Postmaster>

    def __str__(self) -> str:
        return f"{self.local_part}@{self.domain}" if self.domain else self.local_part

    @property
    def is_utf8(self) -> bool:
        """Whether the address needs SMTPUTF8 (RFC 6531 §3.2)."""
        return not (self.local_part.isascii() and self.domain.isascii())

    @property
    def ascii_domain(self) -> str:
        return to_ascii_domain(self.domain)

    def to_path(self) -> str:
        return f"<{self}>"


def to_ascii_domain(domain: str) -> str:
    """A-label form of a domain (IDNA 2008 via the ``idna`` package, UTS #46 mapping)."""
    if domain.isascii() or domain.startswith("["):
        return domain
    import idna  # local import: only needed for internationalised domains

    return idna.encode(domain, uts46=True).decode("ascii")


def _is_qtext(ch: str) -> bool:
    # RFC 5321 qtextSMTP is printable ASCII; RFC 6531 adds UTF8-non-ascii.
    return " " <= ch <= "~" if ch.isascii() else ch.isprintable()


def _check_atext(ch: str) -> bool:
    if ch.isascii():
        return ch.isalnum() or ch in _ATEXT_SPECIALS
    return ch.isprintable()  # RFC 6531 UTF8-non-ascii; control characters excluded


def parse_local_part(text: str) -> str:
    if not text:
        raise AddressError("empty local part")
    if text.startswith('"'):
        if len(text) < 2 or not text.endswith('"'):
            raise AddressError("unterminated quoted local part")
        i = 1
        while i < len(text) - 1:
            ch = text[i]
            if ch == "\\":
                i += 1
                if i >= len(text) - 1 or not (" " <= text[i] <= "~"):
                    raise AddressError("bad quoted-pair in local part")
            elif ch == '"' or not _is_qtext(ch):
                raise AddressError("invalid character in quoted local part")
            i += 1
    else:
        for atom in text.split("."):
            if not atom:
                raise AddressError("empty atom in local part (leading, trailing or '..')")
            for ch in atom:
                if not _check_atext(ch):
                    raise AddressError(f"invalid character {ch!r} in local part")
    if len(text.encode("utf-8")) > MAX_LOCAL_PART_LENGTH:
        raise AddressError(f"local part longer than {MAX_LOCAL_PART_LENGTH} octets")
    return text


def parse_domain(text: str) -> str:
    """Validate a Domain or address-literal; return it lower-cased."""
    if not text:
        raise AddressError("empty domain")
    if text.startswith("["):
        return _parse_address_literal(text)
    if len(text.encode("utf-8")) > MAX_DOMAIN_LENGTH:
        raise AddressError(f"domain longer than {MAX_DOMAIN_LENGTH} octets")
    domain = text.lower()
    if not domain.isascii():
        # RFC 6531 §3.3: U-labels are allowed; they must be valid IDNA 2008.
        try:
            ascii_form = to_ascii_domain(domain)
        except Exception as exc:  # idna raises several unrelated exception types
            raise AddressError(f"invalid internationalised domain: {exc}") from None
        _check_ldh_labels(ascii_form)
        return domain
    _check_ldh_labels(domain)
    return domain


def _check_ldh_labels(domain: str) -> None:
    for label in domain.split("."):
        if not label:
            raise AddressError("empty label in domain")
        if len(label) > _MAX_LABEL:
            raise AddressError("domain label longer than 63 octets")
        if label[0] == "-" or label[-1] == "-" or not set(label) <= _LDH:
            raise AddressError(f"invalid domain label {label!r}")


def _parse_address_literal(text: str) -> str:
    if not text.endswith("]"):
        raise AddressError("unterminated address literal")
    inner = text[1:-1]
    try:
        if inner[:5].lower() == "ipv6:":
            if "%" in inner:  # ipaddress accepts zone ids; RFC 5321 IPv6-addr has none
                raise ValueError("zone id")
            return f"[IPv6:{ipaddress.IPv6Address(inner[5:]).compressed}]"
        return f"[{ipaddress.IPv4Address(inner)}]"
    except ValueError:
        raise AddressError(f"invalid address literal {text!r}") from None


def _split_mailbox(mailbox: str) -> tuple[str, str]:
    # The local part may be quoted and contain "@", so split at the last "@" that is
    # outside quotes.
    if mailbox.startswith('"'):
        end = 1
        while end < len(mailbox):
            if mailbox[end] == "\\":
                end += 2
                continue
            if mailbox[end] == '"':
                break
            end += 1
        rest = mailbox[end + 1 :]
        if not rest.startswith("@"):
            raise AddressError("missing @domain after quoted local part")
        return mailbox[: end + 1], rest[1:]
    local, at, domain = mailbox.rpartition("@")
    if not at:
        raise AddressError("missing @domain")
    return local, domain


def parse_path(text: str, *, allow_null: bool, allow_postmaster: bool = False) -> Address | None:
    """Parse ``<...>`` as in MAIL FROM / RCPT TO.  Returns None for ``<>``."""
    if len(text.encode("utf-8")) > MAX_PATH_LENGTH:
        raise AddressError(f"path longer than {MAX_PATH_LENGTH} octets")
    if len(text) < 2 or text[0] != "<" or text[-1] != ">":
        raise AddressError("address must be enclosed in <>")
    inner = text[1:-1]
    if not inner:
        if allow_null:
            return None
        raise AddressError("null path not allowed here")
    if inner.startswith("@"):
        # Source route: "@a,@b:user@c" -> ignore the route (RFC 5321 §4.1.1.3).
        colon = inner.find(":")
        if colon < 0:
            raise AddressError("source route without ':'")
        for hop in inner[:colon].split(","):
            if not hop.startswith("@"):
                raise AddressError("bad source route")
            parse_domain(hop[1:])
        inner = inner[colon + 1 :]
    if allow_postmaster and inner.lower() == "postmaster":
        return Address("postmaster", "")
    local, domain = _split_mailbox(inner)
    return Address(parse_local_part(local), parse_domain(domain))
