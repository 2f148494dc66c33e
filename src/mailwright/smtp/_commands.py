"""Command lines: parsing (server role) and writing (client role) in one module.

Keeping both directions beside each other is what guarantees the client and server
agree on the grammar; ``tests/smtp`` round-trips every command through both.
Dispatch is a dict from verb to parser (no name lookups, DESIGN principle 6).
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable
from dataclasses import dataclass

from mailwright.smtp import codes
from mailwright.smtp._address import AddressError, parse_path
from mailwright.smtp._events import (
    Auth,
    AuthResponse,
    Bdat,
    CommandError,
    Data,
    Ehlo,
    Event,
    Expn,
    Helo,
    Help,
    MailFrom,
    Noop,
    Quit,
    RcptTo,
    Rset,
    StartTls,
    Vrfy,
)
from mailwright.smtp._params import (
    ParamError,
    parse_mail_params,
    parse_rcpt_params,
)
from mailwright.smtp._replies import Reply
from mailwright.smtp._xtext import encode_xtext
from mailwright.smtp.limits import MAX_BDAT_CHUNK


@dataclass(frozen=True, slots=True)
class ParseContext:
    """What the parser needs to know about the session."""

    extensions: frozenset[str]  # advertised extension keywords (upper case)


# Error texts quote the peer's input (a bad parameter, a bad address); keep them well
# inside the reply line limit (Reply refuses longer lines, RFC 5321 §4.5.3.1.5).
_MAX_ERROR_TEXT = 200


def _error(code: int, enhanced: str, text: str, line: bytes) -> CommandError:
    if len(text.encode("utf-8")) > _MAX_ERROR_TEXT:
        text = text.encode("utf-8")[: _MAX_ERROR_TEXT - 3].decode("utf-8", "ignore") + "..."
    return CommandError(Reply.of(code, enhanced, text), line)


def _parse_helo(arg: str, line: bytes, ctx: ParseContext, cls: type[Helo | Ehlo]) -> Event:
    domain = arg.strip()
    if not domain or " " in domain:
        name = "EHLO" if cls is Ehlo else "HELO"
        return _error(501, "5.5.4", f"Syntax: {name} hostname", line)
    return cls(domain)


def _split_path_and_params(arg: str, keyword: str) -> tuple[str, str] | None:
    # "FROM:<path> params"; RFC 5321 has no space after the colon, but Postfix and
    # most servers tolerate one, and so do we (robustness principle, §4.1.1.3 note).
    if arg[: len(keyword)].upper() != keyword:
        return None
    rest = arg[len(keyword) :].lstrip(" ")
    if not rest.startswith("<"):
        return None
    # The path ends at the first ">" outside a quoted local part.
    in_quotes = escaped = False
    for i, ch in enumerate(rest):
        if escaped:
            escaped = False
        elif ch == "\\" and in_quotes:
            escaped = True
        elif ch == '"':
            in_quotes = not in_quotes
        elif ch == ">" and not in_quotes:
            path, params = rest[: i + 1], rest[i + 1 :]
            if params and not params.startswith(" "):
                return None
            return path, params.strip()
    return None


def _param_error(exc: ParamError, line: bytes) -> CommandError:
    if exc.unknown:
        return _error(555, "5.5.4", str(exc).capitalize(), line)
    return _error(501, "5.5.4", str(exc).capitalize(), line)


def _parse_mail(arg: str, line: bytes, ctx: ParseContext) -> Event:
    parts = _split_path_and_params(arg, "FROM:")
    if parts is None:
        return CommandError(codes.R501_MAIL_SYNTAX, line)
    try:
        params = parse_mail_params(parts[1], ctx.extensions)
    except ParamError as exc:
        return _param_error(exc, line)
    try:
        address = parse_path(parts[0], allow_null=True)
    except AddressError as exc:
        return _error(501, "5.1.7", f"Bad sender address syntax: {exc}", line)
    if address is not None and address.is_utf8 and not params.smtputf8:
        return CommandError(codes.R553_UTF8_NOT_ALLOWED, line)
    return MailFrom(address, params)


def _parse_rcpt(arg: str, line: bytes, ctx: ParseContext) -> Event:
    parts = _split_path_and_params(arg, "TO:")
    if parts is None:
        return CommandError(codes.R501_RCPT_SYNTAX, line)
    try:
        params = parse_rcpt_params(parts[1], ctx.extensions)
    except ParamError as exc:
        return _param_error(exc, line)
    try:
        address = parse_path(parts[0], allow_null=False, allow_postmaster=True)
    except AddressError as exc:
        return _error(501, "5.1.3", f"Bad recipient address syntax: {exc}", line)
    assert address is not None
    return RcptTo(address, params)


def _no_argument(event: Event, name: str) -> Callable[[str, bytes, ParseContext], Event]:
    def parse(arg: str, line: bytes, ctx: ParseContext) -> Event:
        if arg.strip():
            return _error(501, "5.5.4", f"Syntax: {name} (no arguments)", line)
        return event

    return parse


def _parse_bdat(arg: str, line: bytes, ctx: ParseContext) -> Event:
    # The caller handles a bad BDAT specially: without a size the session cannot know
    # how many octets follow, so it cannot stay in step (RFC 3030 §2).
    words = arg.split()
    if not 1 <= len(words) <= 2 or not _is_number(words[0]) or len(words[0]) > 10:
        return CommandError(codes.R501_BDAT_SYNTAX, line)
    if len(words) == 2 and words[1].upper() != "LAST":
        return CommandError(codes.R501_BDAT_SYNTAX, line)
    size = int(words[0])
    if size > MAX_BDAT_CHUNK:
        return CommandError(codes.R552_BDAT_TOO_LARGE, line)
    return Bdat(size, last=len(words) == 2)


def _is_number(text: str) -> bool:
    return text.isascii() and text.isdigit()  # str.isdigit() alone accepts "²"


def _parse_auth(arg: str, line: bytes, ctx: ParseContext) -> Event:
    words = arg.split()
    if not 1 <= len(words) <= 2:
        return CommandError(codes.R501_AUTH_SYNTAX, line)
    initial: bytes | None = None
    if len(words) == 2:
        if words[1] == "=":
            initial = b""  # RFC 4954 §4: "=" is an empty initial response
        else:
            decoded = decode_base64(words[1])
            if decoded is None:
                return CommandError(codes.R501_BAD_INITIAL_RESPONSE, line)
            initial = decoded
    return Auth(words[0].upper(), initial)


def decode_base64(text: str) -> bytes | None:
    try:
        return base64.b64decode(text.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError):
        return None


def parse_auth_response(line: bytes) -> Event:
    """A line of a SASL exchange (RFC 4954 §4): base64, or ``*`` to cancel."""
    text = line.decode("ascii", "replace").strip()
    if text == "*":
        return AuthResponse(None)
    decoded = decode_base64(text)
    if decoded is None:
        return CommandError(codes.R501_BAD_AUTH_RESPONSE, line)
    return AuthResponse(decoded)


_PARSERS: dict[str, Callable[[str, bytes, ParseContext], Event]] = {
    "HELO": lambda a, line, c: _parse_helo(a, line, c, Helo),
    "EHLO": lambda a, line, c: _parse_helo(a, line, c, Ehlo),
    "MAIL": _parse_mail,
    "RCPT": _parse_rcpt,
    "DATA": _no_argument(Data(), "DATA"),
    "BDAT": _parse_bdat,
    "RSET": _no_argument(Rset(), "RSET"),
    "QUIT": _no_argument(Quit(), "QUIT"),
    "STARTTLS": _no_argument(StartTls(), "STARTTLS"),
    "NOOP": lambda a, line, c: Noop(a.strip()),
    "VRFY": lambda a, line, c: (
        Vrfy(a.strip()) if a.strip() else CommandError(codes.R501_VRFY_SYNTAX, line)
    ),
    "EXPN": lambda a, line, c: (
        Expn(a.strip()) if a.strip() else CommandError(codes.R501_EXPN_SYNTAX, line)
    ),
    "HELP": lambda a, line, c: Help(a.strip()),
    "AUTH": _parse_auth,
}

COMMANDS = tuple(_PARSERS)
# RFC 5321 §4.5.3.1.4: only MAIL and RCPT carry extension parameters.
EXTENDED_VERBS = frozenset({"MAIL", "RCPT"})


def parse_command(line: bytes, ctx: ParseContext) -> Event:
    """One command line (without CRLF) -> an Event, or a CommandError to send back."""
    try:
        text = line.decode("utf-8")
    except UnicodeDecodeError:
        return CommandError(codes.R500_BAD_ENCODING, line)
    if "\r" in text or "\x00" in text:
        return CommandError(codes.R500_BAD_ENCODING, line)
    verb, _, arg = text.partition(" ")
    # ASCII only: str.upper() would make "maıl" (dotless i) or "ſtarttls" a command.
    parser = _PARSERS.get(verb.upper()) if verb.isascii() else None
    if parser is None:
        return CommandError(codes.R500_UNRECOGNIZED, line)
    return parser(arg, line, ctx)


# -- writing (client role) ---------------------------------------------------------


def _mail_params_text(event: MailFrom) -> str:
    p = event.params
    out = []
    if p.size is not None:
        out.append(f"SIZE={p.size}")
    if p.body:
        out.append(f"BODY={p.body}")
    if p.smtputf8:
        out.append("SMTPUTF8")
    if p.ret:
        out.append(f"RET={p.ret}")
    if p.envid:
        out.append(f"ENVID={encode_xtext(p.envid)}")
    if p.auth:
        out.append(f"AUTH={encode_xtext(p.auth)}")
    return "".join(" " + x for x in out)


def _rcpt_params_text(event: RcptTo) -> str:
    p = event.params
    out = []
    if p.notify:
        out.append("NOTIFY=" + ",".join(p.notify))
    if p.orcpt:
        addr_type, _, addr = p.orcpt.partition(";")
        out.append(f"ORCPT={addr_type};{encode_xtext(addr)}")
    return "".join(" " + x for x in out)


def write_command(event: Event) -> bytes:
    """Serialise a command event the way the server's parser reads it."""
    match event:
        case Helo(domain):
            text = f"HELO {domain}"
        case Ehlo(domain):
            text = f"EHLO {domain}"
        case MailFrom(address, _):
            path = "<>" if address is None else address.to_path()
            text = f"MAIL FROM:{path}{_mail_params_text(event)}"
        case RcptTo(address, _):
            text = f"RCPT TO:{address.to_path()}{_rcpt_params_text(event)}"
        case Data():
            text = "DATA"
        case Bdat(size, last):
            text = f"BDAT {size}" + (" LAST" if last else "")
        case Rset():
            text = "RSET"
        case Noop(arg):
            text = f"NOOP {arg}".rstrip()
        case Quit():
            text = "QUIT"
        case Vrfy(arg):
            text = f"VRFY {arg}"
        case Expn(arg):
            text = f"EXPN {arg}"
        case Help(arg):
            text = f"HELP {arg}".rstrip()
        case StartTls():
            text = "STARTTLS"
        case Auth(mechanism, initial):
            text = f"AUTH {mechanism}"
            if initial is not None:
                text += " " + (base64.b64encode(initial).decode() if initial else "=")
        case AuthResponse(data):
            text = "*" if data is None else base64.b64encode(data).decode()
        case _:
            raise TypeError(f"{type(event).__name__} is not a command")
    if "\r" in text or "\n" in text:
        raise ValueError("command text must not contain CR or LF")
    return text.encode("utf-8") + b"\r\n"
