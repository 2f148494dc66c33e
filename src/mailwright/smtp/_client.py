"""ClientConnection: the client role of the sans-IO core (relay and `mailwright send`).

Mirror of ``ServerConnection``::

    data = conn.send(event)       # a command, DataChunk or EndOfData -> bytes to write
    conn.receive_data(bytes)      # b"" means EOF
    conn.next_event()             # a Reply, NEED_DATA or ConnectionClosed

Commands are written by ``_commands.write_command``, the same module the server's
parser lives in.  Message data is dot-stuffed (RFC 5321 §4.5.2) and every bare CR or
LF is turned into CRLF, so a message we relay can never carry an ambiguous line end
to the next hop (the sending half of the smuggling defence).
"""

from __future__ import annotations

from mailwright.smtp._buffer import ReceiveBuffer
from mailwright.smtp._commands import write_command
from mailwright.smtp._errors import LocalProtocolError, RemoteProtocolError
from mailwright.smtp._events import Bdat, ConnectionClosed, Data, DataChunk, EndOfData, Event
from mailwright.smtp._replies import Reply, _valid_enhanced
from mailwright.smtp._server import NEED_DATA, _Sentinel

# RFC 5321 §4.5.3.1.5 says 512; real servers send longer EHLO and error lines, so we
# accept up to the text-line limit before calling the reply broken.
MAX_REPLY_LINE_READ = 1000
MAX_REPLY_LINES = 100


def normalize_line_endings(data: bytes) -> bytes:
    """Turn CRLF, bare CR and bare LF into CRLF."""
    if b"\r" not in data:
        return data.replace(b"\n", b"\r\n")
    return data.replace(b"\r\n", b"\n").replace(b"\r", b"\n").replace(b"\n", b"\r\n")


class ClientConnection:
    def __init__(self) -> None:
        self._buf = ReceiveBuffer()
        self._eof = False
        self.pending = 1  # replies owed to us; the greeting first
        self._data_mode = False  # between DATA and the end of data: stuff and normalise
        self._at_line_start = True
        self._held_cr = False  # a CR at the end of a chunk whose LF may come next

    def send(self, event: Event) -> bytes:
        if isinstance(event, DataChunk):
            return self._write_data(event.data) if self._data_mode else event.data
        if isinstance(event, EndOfData):
            if not self._data_mode:
                raise LocalProtocolError("EndOfData outside DATA")
            out = self._write_data(b"", final=True)
            if not self._at_line_start:
                out += b"\r\n"  # RFC 5321 §4.1.1.4: the body must end with CRLF
            self._data_mode = False
            self.pending += 1
            return out + b".\r\n"
        out = write_command(event)
        self.pending += 1
        if isinstance(event, Data):
            self._data_mode = True
            self._at_line_start = True
            self._held_cr = False
        elif isinstance(event, Bdat):
            pass  # the caller sends exactly event.size octets as DataChunk next
        return out

    def _write_data(self, data: bytes, final: bool = False) -> bytes:
        if self._held_cr:
            data = b"\r" + data
            self._held_cr = False
        if data.endswith(b"\r") and not final:
            data = data[:-1]
            self._held_cr = True
        if not data:
            return b""
        data = normalize_line_endings(data)
        if self._at_line_start and data.startswith(b"."):
            data = b"." + data
        data = data.replace(b"\r\n.", b"\r\n..")
        self._at_line_start = data.endswith(b"\r\n")
        return data

    def receive_data(self, data: bytes) -> None:
        if not data:
            self._eof = True
        else:
            self._buf.extend(data)

    def next_event(self) -> Reply | _Sentinel | ConnectionClosed:
        """The next complete reply.  Raises RemoteProtocolError on a malformed one."""
        lines: list[str] = []
        code = 0
        offset = 0
        while True:
            index = self._buf.find(b"\n", offset)
            if index < 0:
                if len(self._buf) - offset > MAX_REPLY_LINE_READ:
                    raise RemoteProtocolError("reply line too long")
                return ConnectionClosed() if self._eof else NEED_DATA
            raw = self._buf.peek(index)[offset:].rstrip(b"\r")
            offset = index + 1
            text = raw.decode("utf-8", "replace")
            if len(raw) < 3 or not raw[:3].isdigit() or (len(raw) > 3 and raw[3:4] not in b" -"):
                raise RemoteProtocolError(f"malformed reply line {text[:80]!r}")
            line_code = int(raw[:3])
            if code and line_code != code:
                raise RemoteProtocolError("reply lines with different codes")
            code = line_code
            lines.append(text[4:])
            if len(lines) > MAX_REPLY_LINES:
                raise RemoteProtocolError("reply has too many lines")
            if raw[3:4] != b"-":
                break
        self._buf.skip(offset)
        self.pending = max(0, self.pending - 1)
        if not 200 <= code <= 599:
            raise RemoteProtocolError(f"reply code {code} out of range")
        return _make_reply(code, lines)


def _make_reply(code: int, lines: list[str]) -> Reply:
    # An enhanced code leads every line of the reply when the server uses them
    # (RFC 2034 §4); keep it once, apart from the text.
    first, _, _ = lines[0].partition(" ")
    enhanced = first if _valid_enhanced(code, first) else ""
    if enhanced:
        lines = [line[len(enhanced) + 1 :] if line.startswith(enhanced) else line for line in lines]
    clean = tuple(line.replace("\r", "") for line in lines) or ("",)
    try:
        return Reply(code, enhanced, clean)
    except ValueError:
        # Over-long text from the peer: keep it readable rather than failing the session.
        # Cut by octets (Reply's limit is on the UTF-8 form), not by characters.
        return Reply(
            code,
            enhanced,
            tuple(line.encode()[:400].decode("utf-8", "ignore") for line in clean),
        )
