"""The test message ``mailwright send`` sends: swaks' defaults, or the user's parts.

Defaults as swaks writes them (Date, To, From, Subject "test <date>", Message-Id,
X-Mailer; body "This is a test mailing"), so a transcript reads the same to swaks
users.  ``--header`` replaces a default field of the same name (swaks does too) or
adds one; ``--html`` makes the text a multipart/alternative (RFC 2046 §5.1.4);
``--attach`` adds parts with a MIME type guessed from the file name (``mimetypes``,
application/octet-stream when unknown).  ``--data`` is a whole RFC 5322 message sent
as is (line ends made CRLF by the session, RFC 5321 §2.3.8).
"""

from __future__ import annotations

import mimetypes
import os
import socket
import time
from dataclasses import dataclass, field
from email import policy as email_policy
from email.message import EmailMessage
from email.utils import formatdate
from pathlib import Path

MAILER = "mailwright"
DEFAULT_BODY = "This is a test mailing\n"


class MessageError(Exception):
    """A part of the message could not be built (unreadable file, bad header)."""


@dataclass(frozen=True, slots=True)
class MessageSpec:
    mail_from: str
    to: tuple[str, ...]
    cc: tuple[str, ...] = ()
    headers: tuple[str, ...] = ()  # "Name: value"
    subject: str | None = None
    body: str | None = None
    html: str | None = None
    attachments: tuple[Path, ...] = field(default=())
    data: bytes | None = None  # a whole message, sent as is


def _message_id(domain: str) -> str:
    # swaks: <YYYYMMDDHHMMSS.PID@host>; the nanoseconds keep bulk ids apart.
    stamp = time.strftime("%Y%m%d%H%M%S", time.gmtime())
    return f"<{stamp}.{os.getpid()}.{time.monotonic_ns()}@{domain}>"


def build_message(spec: MessageSpec, *, hostname: str | None = None) -> bytes:
    """The message as RFC 5322 octets with CRLF line ends."""
    if spec.data is not None:
        return spec.data
    date = formatdate(localtime=True)
    host = hostname or socket.getfqdn() or "localhost"
    msg = EmailMessage(policy=email_policy.SMTPUTF8)
    defaults: dict[str, str] = {
        "Date": date,
        "To": ", ".join(spec.to),
        "From": spec.mail_from or "<>",
        "Subject": spec.subject if spec.subject is not None else f"test {date}",
        "Message-Id": _message_id(host),
        "X-Mailer": MAILER,
    }
    if spec.cc:
        defaults["Cc"] = ", ".join(spec.cc)
    extra: list[tuple[str, str]] = []
    for line in spec.headers:
        name, sep, value = line.partition(":")
        name = name.strip()
        if not sep or not name or any(c.isspace() for c in name):
            raise MessageError(f"--header {line!r}: not 'Name: value'")
        match = next((k for k in defaults if k.lower() == name.lower()), None)
        if match is not None:
            defaults[match] = value.strip()
        else:
            extra.append((name, value.strip()))
    try:
        for name, value in (*defaults.items(), *extra):
            msg[name] = value
    except (ValueError, TypeError) as exc:  # a value the email package cannot fold
        raise MessageError(f"header: {exc}") from None
    text = spec.body if spec.body is not None else DEFAULT_BODY
    msg.set_content(text)
    if spec.html is not None:
        msg.add_alternative(spec.html, subtype="html")
    for path in spec.attachments:
        try:
            content = path.read_bytes()
        except OSError as exc:
            raise MessageError(f"--attach {path}: {exc.strerror or exc}") from None
        kind, encoding = mimetypes.guess_type(path.name)
        if kind is None or encoding is not None:  # .tar.gz is gzip, not a tar
            kind = "application/octet-stream"
        maintype, _, subtype = kind.partition("/")
        msg.add_attachment(content, maintype=maintype, subtype=subtype, filename=path.name)
    return msg.as_bytes()
