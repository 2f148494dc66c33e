"""The local recipient directory: which mailboxes an address delivers to.

``LocalDirectory`` answers two questions from the validated ``DomainConfig`` list:
*is this domain ours?* (``is_local_domain``) and *where does this address go?*
(``resolve``).  It is pure and in memory; the RCPT policy hook and the local delivery
agent both ask it, so they cannot disagree about which recipients exist.

Resolution order for ``local@domain`` in a local domain (first rule that matches wins):

1. an exact mailbox;
2. an alias, expanded recursively (targets are local parts of the same domain or full
   addresses in another local domain), de-duplicated in first-seen order;
3. plus-addressing: ``user+tag`` is resolved as ``user`` (rules 1-2) when the full
   local part is neither a mailbox nor an alias; the delimiter is configurable and
   ``""`` turns it off (Postfix ``recipient_delimiter``, split at the first delimiter);
4. the domain's catch-all mailbox;
5. ``postmaster`` only: see below.

Case: RFC 5321 §2.4 says local parts *may* be case-sensitive but leaves the decision
to the receiving host, and warns that exploiting case sensitivity hinders
interoperability.  Like Postfix and chasquid we fold case: local parts compare after
``str.lower()`` (what the config loader applies) and Unicode NFC normalisation (RFC
6531 addresses).  A quoted local part that needs no quoting (``"john"@x``) is the same
mailbox as the unquoted form (RFC 5321 §4.1.2: they are equivalent).

Domains compare case-insensitively in their IDNA A-label form, so both ``bücher.de``
and ``xn--bcher-kva.de`` reach the domain configured as either.  ``Mailbox.domain`` is
that A-label (ASCII) form, which keeps Maildir paths and ``Delivered-To`` headers
ASCII.  See ``normalize_domain`` for the IDNA details.

Alias loops: every alias is expanded at most once per resolution, so mutual
membership (``team-a: [alice, team-b]``, ``team-b: [bob, team-a]``) simply yields
alice and bob, and a pure loop cannot recurse forever.  Nesting deeper than
``MAX_ALIAS_DEPTH`` is cut off (logged).  An alias that expands to no mailbox at all
(a pure loop) counts as unknown, so the later rules (catch-all) still apply.

Postmaster (RFC 5321 §4.5.1): ``postmaster@<every local domain>`` and the bare
``Postmaster`` (no domain) must be accepted, in any case.  Choice: ``postmaster`` is
resolved by the normal rules first (so a domain may have its own postmaster mailbox or
alias, and its catch-all receives it otherwise); if that finds nothing, it goes to the
postmaster of the *primary* domain (the first configured one), by its mailbox or alias.
The bare ``Postmaster`` is ``postmaster@<primary domain>``.  If even the primary
domain has none, ``resolve`` returns ``None``; the config loader is to require one.
"""

from __future__ import annotations

import encodings.idna
import logging
import unicodedata
from collections.abc import Iterator
from dataclasses import dataclass

from mailwright.config import DomainConfig

log = logging.getLogger(__name__)

# Alias nesting bound.  Real alias trees are one or two levels deep; sendmail's
# MAXRCRSN is 10 as well.  Beyond this we assume a configuration mistake.
MAX_ALIAS_DEPTH = 10
POSTMASTER = "postmaster"  # RFC 5321 §4.5.1
ACE_PREFIX = "xn--"  # RFC 3490 §5 / RFC 5890 §2.3.2.1


@dataclass(frozen=True, slots=True)
class Mailbox:
    """One local mailbox: a Maildir at ``<mail root>/<domain>/<name>``.

    ``domain`` is the IDNA A-label (ASCII, lower case) form; ``name`` the configured
    mailbox name (lower case).
    """

    domain: str
    name: str

    @property
    def address(self) -> str:
        return f"{self.name}@{self.domain}"


def _label_to_ascii(label: str) -> str:
    """One label to its A-label: stdlib IDNA 2003 first, raw punycode as the fallback.

    ``encodings.idna`` implements IDNA 2003, whose nameprep *maps* some characters
    (``ß`` → ``ss``, ``ς`` → ``σ``) where IDNA 2008 (RFC 5891) keeps them.  Mapping
    ``straße`` onto ``strasse`` would send mail to a different, possibly foreign,
    domain; so the stdlib result is used only when it round-trips to the same label.
    Otherwise (mapped characters, labels nameprep rejects) we use ``xn--`` + punycode
    of the NFC label, which is what IDNA 2008 produces for a valid label.
    """
    if label.isascii():
        return label
    try:
        encoded = encodings.idna.ToASCII(label).decode("ascii")
        if encodings.idna.ToUnicode(encoded) == label:
            return encoded
    except UnicodeError:
        pass
    return ACE_PREFIX + label.encode("punycode").decode("ascii")


def normalize_domain(domain: str) -> str:
    """The canonical (A-label, lower case, no trailing dot) form of a domain name.

    Accepts U-labels and A-labels in any case; ASCII labels are only lower-cased, so
    this never fails — a label that cannot be encoded keeps a deterministic form and
    simply matches nothing.
    """
    domain = unicodedata.normalize("NFC", domain.strip().rstrip(".").lower())
    return ".".join(_label_to_ascii(label) for label in domain.split("."))


def _normalize_local(local_part: str) -> str:
    if len(local_part) >= 2 and local_part.startswith('"') and local_part.endswith('"'):
        # RFC 5321 §4.1.2 quoted-string: drop the quotes and the quoted-pair escapes.
        inner, out, i = local_part[1:-1], [], 0
        while i < len(inner):
            if inner[i] == "\\" and i + 1 < len(inner):
                i += 1
            out.append(inner[i])
            i += 1
        local_part = "".join(out)
    return unicodedata.normalize("NFC", local_part.lower())


@dataclass(frozen=True, slots=True)
class _Domain:
    ascii_name: str
    mailboxes: dict[str, str]  # normalised local part -> configured mailbox name
    aliases: dict[str, tuple[str, ...]]  # normalised local part -> configured targets
    catch_all: str | None  # configured mailbox name


class LocalDirectory:
    """Domains, mailboxes and aliases of this server, from the validated config."""

    def __init__(self, domains: list[DomainConfig], recipient_delimiter: str = "+") -> None:
        self._delimiter = recipient_delimiter
        self._domains: dict[str, _Domain] = {}
        for cfg in domains:
            ascii_name = normalize_domain(cfg.name)
            self._domains[ascii_name] = _Domain(
                ascii_name=ascii_name,
                mailboxes={_normalize_local(m): m for m in cfg.mailboxes},
                aliases={_normalize_local(a): tuple(t) for a, t in cfg.aliases.items()},
                catch_all=cfg.catch_all.lower() if cfg.catch_all else None,
            )
        # The primary domain (first configured) receives the bare "Postmaster" and the
        # postmaster mail of domains that have no postmaster of their own.
        self._primary = next(iter(self._domains), None)

    @property
    def recipient_delimiter(self) -> str:
        return self._delimiter

    def is_local_domain(self, domain: str) -> bool:
        """True if ``domain`` (U-label or A-label, any case) is one of ours."""
        return normalize_domain(domain) in self._domains

    def known_mailboxes(self) -> Iterator[Mailbox]:
        """Every configured mailbox (the Maildirs to create at start-up)."""
        for dom in self._domains.values():
            for name in dom.mailboxes.values():
                yield Mailbox(dom.ascii_name, name)

    def resolve(self, address: str) -> list[Mailbox] | None:
        """The mailboxes ``address`` delivers to, or None if it is unknown.

        None also for an address in a domain that is not local: callers that need
        to tell the two apart ask ``is_local_domain`` first.  The list is never
        empty and has no duplicates.
        """
        local_part, at, domain = address.rpartition("@")
        if not at:
            # RFC 5321 §4.5.1: "RCPT TO:<Postmaster>" with no domain must be accepted.
            if _normalize_local(address) != POSTMASTER or self._primary is None:
                return None
            local_part, domain = POSTMASTER, self._primary
        dom = self._domains.get(normalize_domain(domain))
        if dom is None or not local_part:
            return None
        local = _normalize_local(local_part)
        found = self._resolve_in(dom, local)
        if found is None and local == POSTMASTER and self._primary is not None:
            primary = self._domains[self._primary]
            found = self._expand(primary, POSTMASTER)
        return found

    def _resolve_in(self, dom: _Domain, local: str) -> list[Mailbox] | None:
        found = self._expand(dom, local)
        if found is not None:
            return found
        if self._delimiter and self._delimiter in local:
            base = local.split(self._delimiter, 1)[0]
            if base:
                found = self._expand(dom, base)
                if found is not None:
                    return found
        if dom.catch_all is not None:
            return [Mailbox(dom.ascii_name, dom.catch_all)]
        return None

    def _expand(self, dom: _Domain, local: str) -> list[Mailbox] | None:
        """Rules 1 and 2: an exact mailbox, else an alias expanded recursively."""
        if local in dom.mailboxes:
            return [Mailbox(dom.ascii_name, dom.mailboxes[local])]
        if local not in dom.aliases:
            return None
        result: dict[Mailbox, None] = {}  # insertion-ordered set
        self._expand_alias(dom, local, 0, set(), result)
        return list(result) or None

    def _expand_alias(
        self,
        dom: _Domain,
        alias: str,
        depth: int,
        seen: set[tuple[str, str]],
        result: dict[Mailbox, None],
    ) -> None:
        if (dom.ascii_name, alias) in seen:
            return  # a loop or a diamond: this alias is already being expanded
        if depth >= MAX_ALIAS_DEPTH:
            log.warning(
                "alias %s@%s nests deeper than %d levels; not expanded further",
                alias,
                dom.ascii_name,
                MAX_ALIAS_DEPTH,
            )
            return
        seen.add((dom.ascii_name, alias))
        for target in dom.aliases[alias]:
            target_local, at, target_domain = target.rpartition("@")
            target_dom: _Domain | None = dom
            if at:
                target_dom = self._domains.get(normalize_domain(target_domain))
            else:
                target_local = target
            key = _normalize_local(target_local)
            if target_dom is None:
                log.warning("alias %s@%s: target %s is not local", alias, dom.ascii_name, target)
            elif key in target_dom.mailboxes:
                result.setdefault(Mailbox(target_dom.ascii_name, target_dom.mailboxes[key]))
            elif key in target_dom.aliases:
                self._expand_alias(target_dom, key, depth + 1, seen, result)
            else:
                log.warning(
                    "alias %s@%s: target %s is neither a mailbox nor an alias",
                    alias,
                    dom.ascii_name,
                    target,
                )
