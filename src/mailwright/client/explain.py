"""What an SMTP reply means, which RFC defines it and what usually fixes it.

``explain_reply(x)`` takes what a person has at hand and returns an ``Explanation``:

* a basic code (``550``), an enhanced code (``5.7.1``), both (``451 4.7.1``);
* a whole reply line as pasted from a log or a bounce
  (``550 5.7.1 <x@y>: Relay access denied``), a multi-line reply (``250-...`` lines);
* a bounce's sentence around it — Postfix's ``host mx[192.0.2.1] said: 550 5.1.1 ...
  (in reply to RCPT TO command)``, Exim's ``SMTP error from remote mail server after
  RCPT TO:<a@b>: 550 ...``, a DSN's ``Status: 5.1.1`` / ``Diagnostic-Code: smtp; 550 ...``;
* or an ``smtp.Reply`` (what ``send``, ``probe`` and ``session`` hold).

``short(reply)`` is the one-line form those commands print next to a reply.  Input that
holds no reply code raises ``ExplainError`` with a one-line reason (the CLI prints it and
exits 2); ``short`` never raises.

Codes the tables do not list are still explained from their parts, as RFC 5321 §4.2.1
(first and second digit) and RFC 3463 §3 (class and subject; "the detail value is
interpreted in the context of the subject") tell a client to read unknown codes — a
provider's 5.7.606 is a security/policy refusal even if no registry names it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from mailwright.client.explain_codes import (
    BASIC,
    CLASSES,
    ENHANCED,
    FIRST_DIGIT,
    SECOND_DIGIT,
    SUBJECTS,
    CodeInfo,
)
from mailwright.client.explain_hints import HINTS, Hint
from mailwright.smtp import Reply

__all__ = [
    "ExplainError",
    "Explanation",
    "explain_reply",
    "parse_reply_text",
    "short",
]

# RFC 3463 §2: subject and detail are each "1*3digit"; the class is 2, 4 or 5.
_ENHANCED = r"[245]\.\d{1,3}\.\d{1,3}"
_ONLY_BASIC = re.compile(r"\d{3}")
_ONLY_ENHANCED = re.compile(_ENHANCED)
_BASIC_AND_ENHANCED = re.compile(rf"(\d{{3}})[ -]({_ENHANCED})")
# A reply line: RFC 5321 §4.2 "Reply-code [ SP textstring ] CRLF" and the "-" form of
# the lines before the last; the enhanced code, when present, starts the text (RFC 2034 §4).
_REPLY_LINE = re.compile(rf"^\s*([2-5][0-5]\d)(?:([ -])(?:({_ENHANCED})(?![\d.]))?\s*(.*))?$")
# The same inside a sentence (bounces, logs): after a separator, so an IP address's
# octets ("192.0.2.250") or a port number does not pass for a code.
_EMBEDDED_REPLY = re.compile(
    rf"(?:^|[\s:;\"'(\[])([2-5][0-5]\d)([ -])({_ENHANCED})(?![\d.])\s*(.*)$"
)
_EMBEDDED_BASIC = re.compile(
    r"(?:[:;]|\bsaid|\bcode)\s+([2-5][0-5]\d)(?:[ -](.*))?$", re.IGNORECASE
)
_EMBEDDED_ENHANCED = re.compile(rf"(?<![\d.])({_ENHANCED})(?![\d.])")

_NOTHING_TO_FIX = "nothing to fix"


class ExplainError(ValueError):
    """The input holds no SMTP reply code; ``str()`` is the one-line reason."""


@dataclass(frozen=True, slots=True)
class Explanation:
    """One reply explained.

    ``code`` is the basic reply code (None when only an enhanced code was given),
    ``enhanced`` the enhanced status code ("" when none), ``summary`` one line (codes,
    name and the recognised wording), ``title`` the same without the codes, ``detail``
    the longer meaning (several sentences), ``rfc`` where it is defined (``"RFC 5321
    §4.2.2; RFC 3463 §3.4"``), ``fix`` what usually fixes it.  ``text`` is the server's
    text as given, ``source`` the MTA or provider whose wording was recognised ("" if
    none), ``registered`` whether every code given is in the RFC/IANA tables.
    """

    code: int | None
    enhanced: str
    summary: str
    detail: str
    rfc: str
    fix: str
    text: str = ""
    source: str = ""
    registered: bool = True
    title: str = ""

    @property
    def permanent(self) -> bool | None:
        """True for 5yz / 5.x.x, False for 4yz / 4.x.x, None for success replies."""
        first = self.code // 100 if self.code is not None else int(self.enhanced[0])
        return {5: True, 4: False}.get(first)

    def as_dict(self) -> dict[str, object]:
        """The JSON form (``mailwright explain --json``)."""
        return {
            "code": self.code,
            "enhanced": self.enhanced or None,
            "summary": self.summary,
            "detail": self.detail,
            "rfc": self.rfc,
            "fix": self.fix,
            "text": self.text,
            "source": self.source or None,
            "registered": self.registered,
            "title": self.title,
            "permanent": self.permanent,
        }


@dataclass(frozen=True, slots=True)
class _Parsed:
    code: int | None
    enhanced: str
    text: str


def parse_reply_text(raw: str) -> tuple[int | None, str, str]:
    """``(code, enhanced, text)`` found in ``raw``; ``ExplainError`` if there is none.

    Forms tried in order: the bare codes; reply lines (one or several, multi-line
    replies joined); a reply inside a sentence with its enhanced code; an enhanced code
    alone in a sentence (a DSN's ``Status:``); a basic code after ``said:``/``smtp;``.
    """
    parsed = _parse(raw)
    return parsed.code, parsed.enhanced, parsed.text


def _parse(raw: str) -> _Parsed:
    stripped = raw.strip()
    if not stripped:
        raise ExplainError("nothing to explain: give a reply code or a reply line")
    if _ONLY_BASIC.fullmatch(stripped):
        _check_basic(stripped)
        return _Parsed(int(stripped), "", "")
    if _ONLY_ENHANCED.fullmatch(stripped):
        return _Parsed(None, stripped, "")
    both = _BASIC_AND_ENHANCED.fullmatch(stripped)
    if both:
        _check_basic(both.group(1))
        return _Parsed(int(both.group(1)), both.group(2), "")
    codes_only = re.fullmatch(r"(\d{3})[ -](\d+\.\d+\.\d+)", stripped)
    if codes_only:
        # Two codes and nothing else: the second was meant as an enhanced code.
        _check_basic(codes_only.group(1))
        raise ExplainError(
            f"{codes_only.group(2)!r} is not an enhanced status code: class.subject.detail "
            "with class 2, 4 or 5 and up to three digits each (RFC 3463 §2)"
        )
    lines = [line for line in stripped.splitlines() if line.strip()]
    reply = _reply_lines(lines)
    if reply is not None:
        return reply
    for line in lines:
        m = _EMBEDDED_REPLY.search(line)
        if m:
            return _Parsed(int(m.group(1)), m.group(3), m.group(4).strip())
    for line in lines:
        m = _EMBEDDED_BASIC.search(line)
        if m:
            return _Parsed(int(m.group(1)), "", (m.group(2) or "").strip())
    for line in lines:
        m = _EMBEDDED_ENHANCED.search(line)
        if m:
            return _Parsed(None, m.group(1), stripped if len(lines) == 1 else "")
    head = stripped.splitlines()[0]
    shown = head if len(head) <= 60 else head[:57] + "..."
    if re.fullmatch(r"\d+", stripped) or re.fullmatch(r"\d+(?:\.\d+)+", stripped):
        raise ExplainError(
            f"{shown!r} is not a reply code: basic codes are three digits 2xx-5xx "
            "(RFC 5321 §4.2), enhanced codes class.subject.detail with class 2, 4 or 5 "
            "(RFC 3463 §2)"
        )
    raise ExplainError(f"no SMTP reply code found in {shown!r}")


def _check_basic(digits: str) -> None:
    # RFC 5321 §4.2.1: first digit 2-5, second digit 0-5.
    if digits[0] not in "2345" or digits[1] not in "012345":
        raise ExplainError(
            f"{digits!r} is not an SMTP reply code: the first digit is 2-5 and the "
            "second 0-5 (RFC 5321 §4.2.1)"
        )


def _reply_lines(lines: list[str]) -> _Parsed | None:
    """A reply as pasted: every line ``NNN[ -]text`` with one code (RFC 5321 §4.2.1:
    the lines of a multi-line reply share the code).  The first line's enhanced code
    counts; RFC 2034 §4 repeats it on every line, so it is stripped from each."""
    # A bounce may put a sentence before the reply ("SMTP error from remote mail server
    # after RCPT TO:<a@b>:" then the reply lines): the first run of lines with one code.
    matches: list[re.Match[str]] = []
    for line in lines:
        m = _REPLY_LINE.match(line)
        if m is None or (matches and m.group(1) != matches[0].group(1)):
            if matches:
                break
            continue
        matches.append(m)
    if not matches:
        return None
    first = matches[0]
    enhanced = first.group(3) or ""
    texts = []
    for m in matches:
        texts.append(
            (
                (m.group(4) or "")
                if m.group(3) == enhanced or not m.group(3)
                else f"{m.group(3)} {m.group(4) or ''}"
            ).strip()
        )
    return _Parsed(int(first.group(1)), enhanced, "\n".join(t for t in texts if t))


def explain_reply(text_or_reply: str | Reply) -> Explanation:
    """Explain a code, a pasted reply (line, lines, bounce sentence) or an ``smtp.Reply``.

    Raises ``ExplainError`` (one line) when a string holds no reply code.
    """
    if isinstance(text_or_reply, Reply):
        parsed = _Parsed(text_or_reply.code, text_or_reply.enhanced, "\n".join(text_or_reply.lines))
    else:
        parsed = _parse(text_or_reply)
    return _explain(parsed)


def short(reply: str | Reply) -> str:
    """One line for ``send``/``probe``/``session`` to print beside a reply.

    ``"5.1.1 Bad destination mailbox address: the recipient does not exist: check the
    address"``; success replies get only their meaning.  Never raises: text with no
    code gives "".
    """
    try:
        e = explain_reply(reply)
    except ExplainError:
        return ""
    if e.fix == _NOTHING_TO_FIX or e.permanent is None:
        return e.title
    return f"{e.title} -- {e.fix}"


def _explain(parsed: _Parsed) -> Explanation:
    code, enhanced, text = parsed.code, parsed.enhanced, parsed.text
    basic_info = _basic_info(code) if code is not None else None
    enh_info = _enhanced_info(enhanced) if enhanced else None
    registered = (code is None or code in BASIC) and (
        not enhanced or _enhanced_key(enhanced) in ENHANCED
    )
    notes: list[str] = []
    if code is not None and enhanced and str(code)[0] != enhanced[0]:
        # RFC 3463 §3.1 / RFC 2034 §4: the class must agree with the reply's first digit.
        notes.append(
            f"The enhanced code's class ({enhanced[0]}) disagrees with the reply code "
            f"({code}); the reply code decides what the client does (RFC 5321 §4.2.1)."
        )
    hint = _hint(text, enhanced, code) if text else None

    # The enhanced code is the more precise of the two (RFC 3463 §1), so it names the
    # problem when present; the basic code still decides retry vs. give up.
    main = enh_info or basic_info
    assert main is not None
    label = " ".join(p for p in (str(code) if code is not None else "", enhanced) if p)
    title = main.title if hint is None else f"{main.title} ({hint.diagnosis})"
    summary = f"{label} {title}"

    detail_parts: list[str] = []
    if code is not None:
        assert basic_info is not None
        detail_parts.append(
            f"{code}: {basic_info.title} - {basic_info.meaning} "
            f"[{FIRST_DIGIT[code // 100]}; {SECOND_DIGIT[(code // 10) % 10]}]."
        )
    if enhanced and enh_info is not None:
        cls = int(enhanced[0])
        subject = SUBJECTS.get(_enhanced_key(enhanced)[0])
        about = f"; subject: {subject.title.lower()}" if subject is not None else ""
        detail_parts.append(
            f"{enhanced}: {enh_info.title} - {enh_info.meaning} "
            f"[class {cls}: {CLASSES[cls]}{about}]."
        )
    if hint is not None:
        detail_parts.append(f"The text matches {hint.source}'s wording: {hint.diagnosis}.")
    detail_parts.extend(notes)

    rfcs = []
    if basic_info is not None:
        rfcs.append(basic_info.rfc)
    if enh_info is not None:
        rfcs.append(enh_info.rfc)
        if "IANA" not in enh_info.rfc:
            rfcs.append("IANA SMTP Enhanced Status Codes registry (RFC 5248)")
    fix = hint.fix if hint is not None else main.fix
    first = code // 100 if code is not None else int(enhanced[0])
    if first in (2, 3):
        fix = _NOTHING_TO_FIX if first == 2 else main.fix
    elif first == 4 and fix != _NOTHING_TO_FIX:
        fix = f"temporary: {fix}"
    return Explanation(
        code=code,
        enhanced=enhanced,
        summary=summary,
        detail=" ".join(detail_parts),
        rfc="; ".join(dict.fromkeys(rfcs)),
        fix=fix,
        text=text,
        source=hint.source if hint is not None else "",
        registered=registered,
        title=title,
    )


def _basic_info(code: int) -> CodeInfo:
    known = BASIC.get(code)
    if known is not None:
        return known
    first, second = code // 100, (code // 10) % 10
    return CodeInfo(
        f"Unregistered {first}{second}x reply",
        f"a code no RFC defines; read by its digits: {FIRST_DIGIT[first]}, about "
        f"{SECOND_DIGIT[second]}",
        "RFC 5321 §4.2.1",
        "read the reply text; the digits only say the class of the problem",
    )


def _enhanced_key(enhanced: str) -> tuple[int, int]:
    _, subject, detail = enhanced.split(".")
    return int(subject), int(detail)


def _enhanced_info(enhanced: str) -> CodeInfo:
    key = _enhanced_key(enhanced)
    known = ENHANCED.get(key)
    if known is not None:
        return known
    subject = SUBJECTS.get(key[0])
    if subject is None:
        return CodeInfo(
            f"Unregistered subject {key[0]}",
            "a subject no RFC defines (RFC 3463 §3.2 has 0-7); only the class is known",
            "RFC 3463 §3.1",
            "read the reply text",
        )
    return CodeInfo(
        f"{subject.title} (detail {key[1]} unregistered)",
        f"{subject.meaning}; the detail is the sender's own (providers such as "
        "Microsoft use details beyond the registry)",
        "RFC 3463 §3.2",
        subject.fix,
    )


def _hint(text: str, enhanced: str, code: int | None) -> Hint | None:
    first = code // 100 if code is not None else int(enhanced[0]) if enhanced else 5
    if first in (2, 3):
        return None  # success texts carry no diagnosis ("250 2.0.0 Ok: queued as ...")
    sub_detail = enhanced.split(".", 1)[1] if enhanced else ""
    for hint in HINTS:
        if hint.matches(text, sub_detail):
            return hint
    return None
