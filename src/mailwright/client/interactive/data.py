"""DATA mode: typed body lines -> the octets the core writes for them.

After the 354 each typed line is one line of the message.  A lone ``.`` ends the
message, as in telnet, but nothing else needs care: the core's body writer
(``ClientConnection.send(DataChunk)``) dot-stuffs (RFC 5321 §4.5.2), so a body line
that starts with ``.`` -- ``..`` or ``.signature`` -- arrives as typed, and the user
never has to double a dot.  ``EndOfData`` writes the final ``.`` (CRLF.CRLF is the only
end of data, RFC 5321 §4.1.1.4).
"""

from __future__ import annotations

from mailwright.smtp import ClientConnection, DataChunk, EndOfData

END_OF_DATA_LINE = "."


def frame_body_line(conn: ClientConnection, line: str) -> tuple[bytes, bool]:
    """The octets for one typed ``line`` in DATA mode, and whether it ended the
    message.  The line's end is CRLF whatever the terminal sent."""
    if line == END_OF_DATA_LINE:
        # size is what a server counted; the client core writes the dot whatever it is.
        return conn.send(EndOfData(0)), True
    return conn.send(DataChunk(line.encode("utf-8") + b"\r\n")), False
