"""Tab completion: the verbs, the helpers, and what the server advertised in EHLO.

``candidates`` is the logic (plain strings, testable); ``SessionCompleter`` adapts it
to prompt_toolkit.  The first word completes to the RFC 5321 verbs, the extension
verbs the last EHLO advertised (STARTTLS, AUTH, ETRN, BDAT with CHUNKING -- RFC 3207,
4954, 1985, 3030) and the session's helpers; after ``auth`` come the advertised
mechanisms the helper can run; after ``MAIL FROM:<...>`` / ``RCPT TO:<...>`` the
parameters of the advertised extensions (SIZE, BODY, SMTPUTF8, RET/ENVID, NOTIFY/ORCPT).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping

from prompt_toolkit.completion import CompleteEvent, Completer, Completion
from prompt_toolkit.document import Document

from mailwright.client.interactive.auth import MECHANISMS

BASE_VERBS = (
    "EHLO",
    "HELO",
    "MAIL FROM:<",
    "RCPT TO:<",
    "DATA",
    "RSET",
    "NOOP",
    "QUIT",
    "VRFY",
    "EXPN",
    "HELP",
)
# The local helpers; STARTTLS and AUTH are helpers too, offered once advertised.
HELPERS = ("raw", "save")
# Extension keyword -> the verb it adds (RFC 3207, 4954, 1985).
_EXTENSION_VERBS = {"STARTTLS": "STARTTLS", "AUTH": "AUTH", "ETRN": "ETRN"}
# Extension keyword -> the MAIL parameters it adds (RFC 1870, 6152, 6531, 3461, 3030).
_MAIL_PARAMS = {
    "SIZE": ("SIZE=",),
    "8BITMIME": ("BODY=8BITMIME", "BODY=7BIT"),
    "BINARYMIME": ("BODY=BINARYMIME",),
    "SMTPUTF8": ("SMTPUTF8",),
    "DSN": ("RET=FULL", "RET=HDRS", "ENVID="),
    "AUTH": ("AUTH=<>",),
}
_RCPT_PARAMS = {"DSN": ("NOTIFY=", "ORCPT=rfc822;")}


def candidates(before_cursor: str, extensions: Mapping[str, str]) -> list[str]:
    """Completions of the word being typed (the text after the last space)."""
    words = before_cursor.split(" ")
    current = words[-1]
    if len(words) == 1:
        options = list(BASE_VERBS)
        options += [v for k, v in _EXTENSION_VERBS.items() if k in extensions]
        options += list(HELPERS)
        return _matching(options, current, ignore_case=True)
    verb = words[0].upper()
    if verb == "AUTH" and len(words) == 2:
        offered = extensions.get("AUTH", "").upper().split()
        usable = [m.lower() for m in MECHANISMS if not offered or m in offered]
        return _matching(usable, current, ignore_case=True)
    if verb in ("MAIL", "RCPT") and len(words) >= 3 and ">" in " ".join(words[1:-1]):
        table = _MAIL_PARAMS if verb == "MAIL" else _RCPT_PARAMS
        params = [p for k, ps in table.items() if k in extensions for p in ps]
        return _matching(params, current, ignore_case=True)
    return []


def _matching(options: Iterable[str], prefix: str, *, ignore_case: bool) -> list[str]:
    key = prefix.upper() if ignore_case else prefix
    seen: list[str] = []
    for option in options:
        if (option.upper() if ignore_case else option).startswith(key) and option not in seen:
            seen.append(option)
    return seen


class SessionCompleter(Completer):
    """prompt_toolkit's view of ``candidates``; ``extensions`` is read at each Tab, so
    completion follows the latest EHLO (and forgets it after STARTTLS)."""

    def __init__(self, extensions: Callable[[], Mapping[str, str]]) -> None:
        self._extensions = extensions

    def get_completions(
        self, document: Document, complete_event: CompleteEvent
    ) -> Iterator[Completion]:
        before = document.text_before_cursor
        current = before.split(" ")[-1]
        for option in candidates(before, self._extensions()):
            yield Completion(option, start_position=-len(current))
