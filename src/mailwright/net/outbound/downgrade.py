"""8-bit (or binary) MIME to 7-bit MIME, for a next hop without 8BITMIME (RFC 6152 §3)
or without BINARYMIME (RFC 3030 §3).

RFC 6152 §3 leaves a relay two choices for 8-bit content the next hop cannot take:
convert it to 7-bit MIME, or fail it permanently.  We convert whatever MIME lets us
convert without guessing, and fail the rest with the reason:

* Each leaf part whose body has 8-bit octets is re-encoded: text/* as
  quoted-printable (RFC 2045 §6.7; line breaks stay line breaks, so it still reads as
  text), anything else as base64 (§6.8).  Only its Content-Transfer-Encoding field
  changes (added when absent); every other header line stays byte for byte (DKIM
  signatures over the header section survive; body hashes cannot).
* multipart/* is walked part by part (RFC 2046 §5.1.1: delimiters are lines of
  ``--boundary``); a multipart declared 8bit/binary is relabelled 7bit once its parts
  are (§6.4 allows only identity encodings on composite types).  message/rfc822 is
  converted as the message it carries (RFC 2046 §5.2.1: it may not be encoded itself).
* Failures (``DowngradeError``, 554 5.6.3): 8-bit octets in a header section (only
  RFC 6532 allows that, and only over SMTPUTF8; RFC 2047 re-encoding would need the
  charset we do not know); an 8-bit body without MIME-Version (RFC 2045 §4: not MIME,
  so its charset is unknown and nothing says how to label a re-encoding); 8-bit octets
  in a multipart preamble or epilogue, or inside a body that already claims
  quoted-printable or base64 (malformed); other message/* types with 8-bit content
  (RFC 2046 §5.2.2-5.2.3 require 7bit); a multipart without a boundary.
"""

from __future__ import annotations

import base64
import binascii
import email.message

CRLF = b"\r\n"
# RFC 2045 §6.8: base64 output lines of at most 76 characters.
BASE64_LINE = 57  # input octets per 76-character output line


class DowngradeError(ValueError):
    """The message cannot be converted to 7-bit MIME; the message says why."""


def to_seven_bit(message: bytes) -> bytes:
    """``message`` (CRLF line ends) with every 8-bit body re-encoded as 7-bit MIME."""
    if message.isascii():
        return message
    header, _ = _split(message)
    if "mime-version" not in _fields(header):
        raise DowngradeError(
            "8-bit body without MIME structure (no MIME-Version): its charset is unknown"
        )
    return _entity(message, "text/plain")


def _split(entity: bytes) -> tuple[list[bytes], bytes | None]:
    """(header lines, body); body None when there is no empty line."""
    if entity.startswith(CRLF):
        return [], entity[2:]
    end = entity.find(CRLF + CRLF)
    if end < 0:
        return entity.split(CRLF), None
    return entity[:end].split(CRLF), entity[end + 4 :]


def _join(header: list[bytes], body: bytes | None) -> bytes:
    if body is None:
        return CRLF.join(header)
    return CRLF.join(header) + CRLF + CRLF + body if header else CRLF + body


def _fields(header: list[bytes]) -> dict[str, tuple[int, int, str]]:
    """Field name (lower case) -> (first line, end line, unfolded value); the first
    occurrence wins.  Raises DowngradeError for 8-bit octets in the header section."""
    if not all(line.isascii() for line in header):
        raise DowngradeError("8-bit octets in a header section (needs SMTPUTF8, RFC 6532)")
    out: dict[str, tuple[int, int, str]] = {}
    index = 0
    while index < len(header):
        start = index
        index += 1
        while index < len(header) and header[index][:1] in (b" ", b"\t"):
            index += 1
        name, colon, _ = header[start].partition(b":")
        if not colon:
            continue
        value = b" ".join(line.strip() for line in header[start:index]).partition(b":")[2]
        out.setdefault(name.strip().decode("ascii").lower(), (start, index, value.strip().decode()))
    return out


def _set_encoding(header: list[bytes], encoding: str) -> list[bytes]:
    line = f"Content-Transfer-Encoding: {encoding}".encode("ascii")
    found = _fields(header).get("content-transfer-encoding")
    if found is None:
        return [*header, line]
    start, end, _ = found
    return [*header[:start], line, *header[end:]]


def _entity(entity: bytes, default_type: str) -> bytes:
    header, body = _split(entity)
    if body is None or body.isascii():
        return entity
    fields = _fields(header)
    parsed = email.message.Message()
    parsed.set_default_type(default_type)
    if "content-type" in fields:
        parsed["Content-Type"] = fields["content-type"][2]
    content_type = parsed.get_content_type()
    encoding = fields.get("content-transfer-encoding", (0, 0, "7bit"))[2].lower()
    if content_type.startswith("multipart/"):
        boundary = parsed.get_boundary()
        if not boundary:
            raise DowngradeError(f"{content_type} without a boundary")
        inner = "message/rfc822" if content_type == "multipart/digest" else "text/plain"
        body = _multipart(body, boundary.encode("ascii", "replace"), inner)
        if encoding in ("8bit", "binary"):
            header = _set_encoding(header, "7bit")
        return _join(header, body)
    if content_type == "message/rfc822":
        body = _entity(body, "text/plain") if _is_mime(body) else _not_mime(body)
        return _join(_set_encoding(header, "7bit"), body)
    if content_type.startswith("message/"):
        raise DowngradeError(f"8-bit octets in {content_type}, which must be 7bit")
    if encoding in ("quoted-printable", "base64"):
        raise DowngradeError(f"8-bit octets inside a {encoding} body")
    if content_type.startswith("text/"):
        return _join(_set_encoding(header, "quoted-printable"), _quoted_printable(body))
    return _join(_set_encoding(header, "base64"), _base64(body))


def _is_mime(message: bytes) -> bool:
    header, _ = _split(message)
    return "mime-version" in _fields(header)


def _not_mime(message: bytes) -> bytes:
    header, _ = _split(message)
    _fields(header)  # 8-bit header octets are the more precise reason
    raise DowngradeError("attached message with an 8-bit body and no MIME-Version")


def _multipart(body: bytes, boundary: bytes, inner_default: str) -> bytes:
    lines = body.split(CRLF)
    delimiter, close = b"--" + boundary, b"--" + boundary + b"--"
    marks = []  # indexes of delimiter lines, up to and including the close delimiter
    for index, line in enumerate(lines):
        stripped = line.rstrip(b" \t")  # RFC 2046 §5.1.1: transport padding
        if stripped in (delimiter, close):
            marks.append(index)
            if stripped == close:
                break
    if not marks:
        raise DowngradeError("multipart body without its boundary")
    outside = lines[: marks[0]] + lines[marks[-1] + 1 :]
    if not all(line.isascii() for line in outside):
        raise DowngradeError("8-bit octets in a multipart preamble or epilogue")
    out = lines[: marks[0] + 1]
    for first, last in zip(marks, [*marks[1:], len(lines)], strict=True):
        if first == marks[-1] and lines[first].rstrip(b" \t") == close:
            out.extend(lines[first + 1 :])
            break
        part = CRLF.join(lines[first + 1 : last])
        out.extend(_entity(part, inner_default).split(CRLF))
        if last < len(lines):
            out.append(lines[last])
    return CRLF.join(out)


def _quoted_printable(body: bytes) -> bytes:
    # istext: CRLF stays a line break (RFC 2045 §6.7 rule 4), soft breaks at 76.
    return binascii.b2a_qp(body, quotetabs=False, istext=True, header=False)


def _base64(body: bytes) -> bytes:
    lines = [base64.b64encode(body[i : i + BASE64_LINE]) for i in range(0, len(body), BASE64_LINE)]
    return CRLF.join(lines) + CRLF if lines else b""
