"""How configuration problems are told to the operator: ``ConfigError`` and the wording.

The promise of the whole package lives here: every problem is one line naming the
field (``listener.0.port: must be ...``), all of them reported at once, so an operator
fixes a file in one pass.  pydantic's messages are put into plain words
(``format_error``); problems between fields travel inside pydantic's error as
``CrossReferenceErrors`` and come out one line each (``format_errors``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


class ConfigError(Exception):
    """The configuration is invalid; ``problems`` holds one line per error."""

    def __init__(self, source: str, problems: list[str]) -> None:
        self.source = source
        self.problems = problems
        super().__init__("\n".join(f"{source}: {p}" for p in problems))


class CrossReferenceErrors(ValueError):
    """Problems between fields, each ``(field location, message)``.  pydantic keeps the
    exception in the error's ``ctx``, so ``format_errors`` can give one line each."""

    def __init__(self, problems: list[tuple[str, str]]) -> None:
        super().__init__("; ".join(f"{loc}: {msg}" for loc, msg in problems))
        self.problems = problems


def is_cross_reference(err: Any) -> bool:
    return isinstance((err.get("ctx") or {}).get("error"), CrossReferenceErrors)


def format_errors(err: Any) -> list[str]:
    cause = (err.get("ctx") or {}).get("error")
    if isinstance(cause, CrossReferenceErrors):
        return [f"{loc}: {msg}" for loc, msg in cause.problems]
    return [format_error(err)]


# pydantic's messages in plain words, by error type: an operator reads "must be a
# whole number", not "Input is not a valid path for <class 'pathlib.Path'>".
_PLAIN_MESSAGES = {
    "path_type": "must be a path (a string)",
    "string_type": "must be a string",
    "int_type": "must be a whole number",
    "int_parsing": "must be a whole number",
    "int_from_float": "must be a whole number",
    "float_type": "must be a number",
    "float_parsing": "must be a number",
    "bool_type": "must be true or false",
    "bool_parsing": "must be true or false",
    "list_type": "must be an array",
    "dict_type": "must be a table",
    "model_type": "must be a table",
    "model_attributes_type": "must be a table",
    "missing": "is required",
    "extra_forbidden": "unknown field",
}
# Values short enough to repeat in an error line.
_MAX_SHOWN_INPUT = 60


def format_error(err: Mapping[str, Any]) -> str:
    location = ".".join(str(part) for part in err["loc"]) or "(top level)"
    kind, value = err["type"], err.get("input")
    if kind == "list_type" and isinstance(value, dict) and isinstance(err["loc"][-1], str):
        # TOML's [x] is one table; [[x]] is an array of tables.  The classic slip.
        name = location
        return f"{location}: write [[{name}]] (an array of tables), not [{name}]"
    message = _PLAIN_MESSAGES.get(kind)
    if message is None:
        message = err["msg"].removeprefix("Value error, ")
        if message.startswith("Input should be "):
            message = "must be " + message.removeprefix("Input should be ")
        elif kind not in ("value_error", "assertion_error"):
            # Leave pydantic's own words only where they are already plain.
            message = message.replace("Input", "value")
    if kind not in ("missing", "extra_forbidden", "value_error") and _shown(value):
        message += f", not {value!r}"
    return f"{location}: {message}"


def _shown(value: Any) -> bool:
    return isinstance(value, str | int | float | bool) and len(repr(value)) <= _MAX_SHOWN_INPUT
