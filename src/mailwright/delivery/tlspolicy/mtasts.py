"""MTA-STS (RFC 8461) as values: the ``_mta-sts`` TXT record, the policy body, and MX
host matching.  Pure functions: fetching is ``fetch``, caching ``cache``, deciding
``decide``.

Parsing is strict where the RFC says "MUST" and lenient where it says so too:

* TXT (§3.1): records that do not begin with ``v=STSv1`` are discarded; if the number
  left is not exactly one, or that one is not valid, the domain has no policy.
* Policy body (§3.2): ``key: value`` lines ending in CRLF or LF; unknown keys are
  ignored (future extensions); ``version``, ``mode`` and ``max_age`` are required,
  ``mx`` is repeatable and required unless the mode is ``none``.  A key other than
  ``mx`` given twice keeps its first value (the RFC is silent; first-wins is what
  postfix-mta-sts-resolver and Go's mox do, and it keeps one reading of a body).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum

# RFC 8461 §3.1: "v=STSv1" must open the record.
STS_TXT_VERSION = "v=STSv1"
# RFC 8461 §3.1: sts-id = 1*32(ALPHA / DIGIT).
_STS_ID = re.compile(r"[A-Za-z0-9]{1,32}")
# RFC 8461 §3.1: sts-ext-name and sts-ext-value.
_STS_EXT_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,31}")
_STS_EXT_VALUE = re.compile(r"[\x21-\x3a\x3c\x3e-\x7e]+")
# RFC 8461 §3.2: sts-policy-version-value = %s"STSv1".
STS_POLICY_VERSION = "STSv1"
# RFC 8461 §3.2: max_age "up to 31557600" seconds (about one year); 1*10 DIGIT.
MAX_AGE_MAX = 31_557_600
_MAX_AGE = re.compile(r"[0-9]{1,10}")
# Largest policy body we read: 64 KiB, as postfix-mta-sts-resolver (HARD_RESP_LIMIT)
# and Postfix's own limits on map values; a real policy is a few hundred bytes.
MAX_POLICY_BYTES = 64 * 1024
# RFC 8461 §3.2: policy key/value pairs; "sts-policy-field-delim = ":" *WSP".
_POLICY_LINE = re.compile(r"([A-Za-z0-9_][A-Za-z0-9_.-]*):[ \t]*(.*?)[ \t]*")
# RFC 5321 Domain, optionally "*." in front (RFC 8461 §3.2 sts-policy-mx-value).
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_MX_PATTERN = re.compile(rf"(?:\*\.)?{_LABEL}(?:\.{_LABEL})*\.?")


class StsError(ValueError):
    """A TXT record or policy body that is not valid MTA-STS (the reason is the text)."""


class StsMode(StrEnum):
    ENFORCE = "enforce"  # deliver only over verified TLS to matching MX hosts
    TESTING = "testing"  # report failures (TLSRPT) but deliver anyway
    NONE = "none"  # the domain withdraws its policy


@dataclass(frozen=True, slots=True)
class StsRecord:
    """A valid ``_mta-sts`` TXT record: the policy id tells when to refetch (§3.1)."""

    id: str


@dataclass(frozen=True, slots=True)
class StsPolicy:
    mode: StsMode
    mx: tuple[str, ...]  # patterns, lower case, no trailing dot; "*." prefix allowed
    max_age: int  # seconds
    version: str = STS_POLICY_VERSION

    def matches(self, host: str) -> bool:
        """Whether MX ``host`` is allowed by this policy (RFC 8461 §4.1)."""
        return any(mx_matches(pattern, host) for pattern in self.mx)

    def to_dict(self) -> dict[str, object]:
        return {
            "version": self.version,
            "mode": self.mode.value,
            "mx": list(self.mx),
            "max_age": self.max_age,
        }


def parse_txt_records(texts: list[str] | tuple[str, ...]) -> StsRecord | None:
    """The domain's STS record from all TXT strings at ``_mta-sts.<domain>``, or None
    when it has no usable one (§3.1: zero, several, or an invalid one)."""
    candidates = [t for t in texts if _begins_with_version(t)]
    if len(candidates) != 1:
        return None
    try:
        return parse_txt_record(candidates[0])
    except StsError:
        return None


def _begins_with_version(text: str) -> bool:
    # "v=STSv1" then a delimiter or the end: "v=STSv12" is another version.
    return text.startswith(STS_TXT_VERSION) and text[len(STS_TXT_VERSION) :].lstrip(" \t")[:1] in (
        ";",
        "",
    )


def parse_txt_record(text: str) -> StsRecord:
    """One record per the §3.1 grammar; raises ``StsError`` saying what is wrong."""
    if not _begins_with_version(text):
        raise StsError(f"TXT record does not begin with {STS_TXT_VERSION}")
    # fields[0] is the whitespace between "v=STSv1" and the first ";".
    fields = text[len(STS_TXT_VERSION) :].split(";")
    record_id: str | None = None
    last = len(fields) - 1
    for index, raw in enumerate(fields[1:], start=1):
        field = raw.strip(" \t")
        if not field:
            # Only the optional final delimiter may leave an empty field.
            if index == last:
                continue
            raise StsError("empty field in TXT record")
        name, eq, value = field.partition("=")
        if not eq:
            raise StsError(f"field {field!r} has no '='")
        if name == "id":
            if record_id is not None:
                raise StsError("more than one id field")
            if not _STS_ID.fullmatch(value):
                raise StsError(f"id {value!r} is not 1-32 letters and digits")
            record_id = value
        elif not (_STS_EXT_NAME.fullmatch(name) and _STS_EXT_VALUE.fullmatch(value)):
            raise StsError(f"extension field {field!r} is malformed")
    if record_id is None:
        raise StsError("TXT record has no id field")
    return StsRecord(record_id)


def parse_policy(body: bytes) -> StsPolicy:
    """The policy in a fetched body (§3.2); raises ``StsError`` saying what is wrong."""
    if len(body) > MAX_POLICY_BYTES:
        raise StsError(f"policy is {len(body)} bytes, more than {MAX_POLICY_BYTES}")
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise StsError("policy is not UTF-8 text") from None
    values: dict[str, str] = {}
    mx: list[str] = []
    # CRLF or LF end a line (§3.2 sts-policy-term-delim); a bare CR is not a delimiter.
    for line in text.replace("\r\n", "\n").split("\n"):
        if not line.strip(" \t"):
            continue
        match = _POLICY_LINE.fullmatch(line)
        if match is None:
            raise StsError(f"policy line {line[:80]!r} is not 'key: value'")
        key, value = match.group(1), match.group(2)
        if key == "mx":
            if not _MX_PATTERN.fullmatch(value):
                raise StsError(f"mx {value[:80]!r} is not a host name or *.pattern")
            mx.append(value.rstrip(".").lower())
        else:
            values.setdefault(key, value)
    version = values.get("version")
    if version != STS_POLICY_VERSION:
        raise StsError(f'policy has no "version: {STS_POLICY_VERSION}" line')
    if "mode" not in values:
        raise StsError("policy has no mode")
    try:
        mode = StsMode(values["mode"])
    except ValueError:
        raise StsError(f"mode {values['mode'][:40]!r} is not enforce, testing or none") from None
    raw_age = values.get("max_age")
    if raw_age is None:
        raise StsError("policy has no max_age")
    if not _MAX_AGE.fullmatch(raw_age):
        raise StsError(f"max_age {raw_age[:40]!r} is not a number of seconds")
    max_age = int(raw_age)
    if max_age > MAX_AGE_MAX:
        raise StsError(f"max_age {max_age} is above the maximum {MAX_AGE_MAX}")
    if mode is not StsMode.NONE and not mx:
        raise StsError(f'mode "{mode}" with no mx line')
    return StsPolicy(mode, tuple(mx), max_age, version)


def mx_matches(pattern: str, host: str) -> bool:
    """RFC 8461 §4.1: case-insensitive; ``*.example.com`` matches exactly one extra
    leftmost label (``mx1.example.com``, not ``example.com`` nor ``a.b.example.com``)."""
    pattern = pattern.rstrip(".").lower()
    host = host.rstrip(".").lower()
    if pattern.startswith("*."):
        label, dot, rest = host.partition(".")
        return bool(label) and bool(dot) and rest == pattern[2:]
    return host == pattern
