"""A receive buffer with O(n) line finding and without quadratic copying.

Consumed bytes are not deleted one command at a time (``del buf[:n]`` on every line of
a long pipeline is quadratic); a start offset moves instead and the buffer is
compacted once the dead prefix is at least half of it.
"""

from __future__ import annotations

# Compact only when the consumed prefix is at least this long, so small pipelines of
# commands never trigger a copy at all.
_COMPACT_THRESHOLD = 4096


class ReceiveBuffer:
    __slots__ = ("_data", "_start")

    def __init__(self) -> None:
        self._data = bytearray()
        self._start = 0

    def __len__(self) -> int:
        return len(self._data) - self._start

    def __bool__(self) -> bool:
        return len(self._data) > self._start

    def extend(self, data: bytes) -> None:
        self._data += data

    def find(self, needle: bytes, start: int = 0) -> int:
        """Index of ``needle`` relative to the unconsumed start, or -1."""
        index = self._data.find(needle, self._start + start)
        return -1 if index < 0 else index - self._start

    def peek(self, n: int | None = None) -> bytes:
        end = len(self._data) if n is None else self._start + n
        return bytes(self._data[self._start : end])

    def view(self) -> memoryview:
        return memoryview(self._data)[self._start :]

    def take(self, n: int) -> bytes:
        """Remove and return the first ``n`` unconsumed bytes."""
        out = bytes(self._data[self._start : self._start + n])
        self.skip(n)
        return out

    def take_line(self, newline: int) -> bytes:
        """Remove the line that ends at ``newline`` (a ``find`` result) and return it
        without its LF or CRLF: one copy instead of three slices."""
        data, start = self._data, self._start
        end = start + newline
        stop = end - 1 if newline > 0 and data[end - 1] == 0x0D else end
        out = bytes(data[start:stop])
        self.skip(newline + 1)
        return out

    def skip(self, n: int) -> None:
        self._start += n
        if self._start >= len(self._data):
            self._data.clear()
            self._start = 0
        elif self._start >= _COMPACT_THRESHOLD and self._start * 2 >= len(self._data):
            del self._data[: self._start]
            self._start = 0

    def clear(self) -> None:
        self._data.clear()
        self._start = 0
