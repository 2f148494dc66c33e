"""Names and server addresses as the resolver takes them.

A lookup name may come with or without the trailing dot, in any case, and as an
internationalised name (U-labels): it is asked as lower-case A-labels (RFC 5890 §2.3.2.1,
RFC 5891 §5 — UTS #46 mapping first, as browsers and MTAs do).  Labels that are already
ASCII are kept as they are (lower-cased) because DNS names are not host names: the
underscore labels of TLSA (``_25._tcp``, RFC 6698 §3), DKIM (``_domainkey``) and DMARC
(``_dmarc``) are legal DNS names that IDNA would reject.
"""

from __future__ import annotations

import dns.exception
import dns.name
import idna


def query_name(text: str) -> dns.name.Name | None:
    """The absolute DNS name for ``text``, or None when no such name can exist (an empty
    label, a label over 63 octets, a name over 255 octets — RFC 1035 §2.3.4 — or an
    internationalised label IDNA refuses)."""
    text = text.strip()
    if not text.isascii():
        try:
            text = idna.uts46_remap(text, std3_rules=False, transitional=False)
        except idna.IDNAError:
            return None
    text = text.removesuffix(".")
    if not text:
        return None
    labels: list[bytes] = []
    for label in text.split("."):
        if label.isascii():
            labels.append(label.lower().encode("ascii"))
            continue
        try:
            labels.append(idna.alabel(label))
        except idna.IDNAError:
            return None
    try:
        return dns.name.Name([*labels, b""])
    except dns.exception.DNSException:
        return None


def name_text(name: dns.name.Name) -> str:
    """The form answers carry: lower case, no trailing dot; the root is ``""``."""
    return name.to_text(omit_final_dot=True).lower() if name != dns.name.root else ""
