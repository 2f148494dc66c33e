"""How the session shows the wire: transcript lines in colour, each reply followed by
its short explanation (``Explain``), local notes apart.

Colours follow the reply class (RFC 5321 §4.2.1): 2xx green, 3xx cyan, 4xx yellow,
5xx red; what we sent is blue; explanations are dim so the wire stays the first thing
the eye finds.  Output goes through prompt_toolkit so it lands above the prompt while
the user types (``patch_stdout``).
"""

from __future__ import annotations

from collections.abc import Callable

from prompt_toolkit import print_formatted_text
from prompt_toolkit.formatted_text import FormattedText

from mailwright.client.interactive.transcript import Direction, Line
from mailwright.smtp import Reply

Explain = Callable[[Reply], str]
EXPLANATION_PREFIX = "   # "

_CLASS_STYLE = {2: "ansigreen", 3: "ansicyan", 4: "ansiyellow", 5: "ansired"}


def line_style(line: Line, reply: Reply | None) -> str:
    if line.direction is Direction.SENT:
        return "ansiblue"
    if line.direction is Direction.LOCAL:
        return "ansimagenta"
    return _CLASS_STYLE.get(reply.code // 100, "") if reply is not None else ""


class Display:
    def __init__(self, explain: Explain | None) -> None:
        self._explain = explain

    def lines(self, lines: list[Line], reply: Reply | None = None) -> None:
        for line in lines:
            _out(line_style(line, reply), line.render())
        if reply is not None and self._explain is not None:
            text = self._explain(reply)
            if text:
                _out("ansibrightblack", EXPLANATION_PREFIX + text)

    def note(self, text: str) -> None:
        for part in text.splitlines():
            _out("ansimagenta", part)


def _out(style: str, text: str) -> None:
    print_formatted_text(FormattedText([(style, text)]))
