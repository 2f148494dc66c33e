"""ESMTP MAIL and RCPT parameters (RFC 5321 §4.1.2 esmtp-param).

MAIL: SIZE (RFC 1870), BODY (RFC 6152, RFC 3030), SMTPUTF8 (RFC 6531), RET and ENVID
(RFC 3461), AUTH (RFC 4954 §5, accepted and recorded).  RCPT: NOTIFY and ORCPT
(RFC 3461).  Each is parsed and validated here and carried with the envelope; xtext
values (ENVID, ORCPT, AUTH) are decoded here, once, and carried decoded.
"""

from __future__ import annotations

from dataclasses import dataclass

from mailwright.smtp._xtext import XtextError, decode_xtext
from mailwright.smtp.limits import MAX_ENVID_LENGTH, MAX_ORCPT_LENGTH

BODY_TYPES = ("7BIT", "8BITMIME", "BINARYMIME")
NOTIFY_VALUES = frozenset({"SUCCESS", "FAILURE", "DELAY"})


class ParamError(ValueError):
    """A parameter is malformed (501 5.5.4) or unknown (555 5.5.4)."""

    def __init__(self, message: str, *, unknown: bool = False) -> None:
        super().__init__(message)
        self.unknown = unknown


@dataclass(frozen=True, slots=True)
class MailParams:
    size: int | None = None
    body: str | None = None  # one of BODY_TYPES
    smtputf8: bool = False
    ret: str | None = None  # FULL | HDRS
    envid: str | None = None  # decoded xtext
    auth: str | None = None  # RFC 4954 AUTH=<mailbox> or "<>", decoded xtext


@dataclass(frozen=True, slots=True)
class RcptParams:
    notify: tuple[str, ...] = ()  # ("NEVER",) or a subset of NOTIFY_VALUES
    orcpt: str | None = None  # "addr-type;address", the address xtext-decoded


def _decoded(value: str) -> str:
    """The xtext ``value`` decoded (once: see ``_xtext``); 501 if it is not xtext."""
    try:
        return decode_xtext(value)
    except XtextError as exc:
        raise ParamError(str(exc)) from None


def split_params(text: str) -> list[tuple[str, str | None]]:
    """``KEY=value KEY2`` -> [(KEY, value), (KEY2, None)], keys upper-cased."""
    out: list[tuple[str, str | None]] = []
    seen: set[str] = set()
    for token in text.split():
        key, eq, value = token.partition("=")
        key = key.upper()
        if not key or not all(c.isalnum() or c == "-" for c in key) or not key.isascii():
            raise ParamError(f"malformed parameter {token!r}")
        if key in seen:
            raise ParamError(f"duplicate parameter {key}")
        seen.add(key)
        out.append((key, value if eq else None))
    return out


def _need_value(key: str, value: str | None) -> str:
    if not value:
        raise ParamError(f"{key} needs a value")
    return value


def parse_mail_params(text: str, enabled: frozenset[str]) -> MailParams:
    """``enabled`` is the set of advertised extensions; parameters of others are 555."""
    size = body = ret = envid = auth = None
    smtputf8 = False
    for key, value in split_params(text):
        if key == "SIZE" and "SIZE" in enabled:
            raw = _need_value(key, value)
            if not (raw.isascii() and raw.isdigit()) or len(raw) > 20:
                raise ParamError("SIZE must be a decimal number")
            size = int(raw)
        elif key == "BODY" and "8BITMIME" in enabled:
            body = _need_value(key, value).upper()
            if body not in BODY_TYPES or (body == "BINARYMIME" and "BINARYMIME" not in enabled):
                raise ParamError(f"unsupported BODY type {value}")
        elif key == "SMTPUTF8" and "SMTPUTF8" in enabled:
            if value is not None:
                raise ParamError("SMTPUTF8 takes no value")
            smtputf8 = True
        elif key == "RET" and "DSN" in enabled:
            ret = _need_value(key, value).upper()
            if ret not in ("FULL", "HDRS"):
                raise ParamError("RET must be FULL or HDRS")
        elif key == "ENVID" and "DSN" in enabled:
            envid = _decoded(_need_value(key, value))
            if len(envid) > MAX_ENVID_LENGTH:
                raise ParamError("ENVID too long")
        elif key == "AUTH" and "AUTH" in enabled:
            auth = _decoded(_need_value(key, value))
        else:
            raise ParamError(f"unsupported parameter {key}", unknown=True)
    return MailParams(size, body, smtputf8, ret, envid, auth)


def parse_rcpt_params(text: str, enabled: frozenset[str]) -> RcptParams:
    notify: tuple[str, ...] = ()
    orcpt = None
    for key, value in split_params(text):
        if key == "NOTIFY" and "DSN" in enabled:
            items = tuple(v.upper() for v in _need_value(key, value).split(","))
            if items == ("NEVER",):
                notify = items
            elif not items or not set(items) <= NOTIFY_VALUES or len(set(items)) != len(items):
                raise ParamError("NOTIFY must be NEVER or a list of SUCCESS, FAILURE, DELAY")
            else:
                notify = items
        elif key == "ORCPT" and "DSN" in enabled:
            raw = _need_value(key, value)
            addr_type, semi, xtext = raw.partition(";")
            if not semi or not addr_type or not xtext:
                raise ParamError("ORCPT must be addr-type;xtext")
            decoded = _decoded(xtext)
            if len(raw) > MAX_ORCPT_LENGTH:
                raise ParamError("ORCPT too long")
            orcpt = f"{addr_type.lower()};{decoded}"
        else:
            raise ParamError(f"unsupported parameter {key}", unknown=True)
    return RcptParams(notify, orcpt)
