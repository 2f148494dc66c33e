"""Every fixed reply has one home, ``smtp/codes.py`` (issue 9 item 7).

A reply whose code, enhanced code and text are all literals is a named constant there
(``R<code>_<MEANING>``), not built in the module that sends it: about 40 were spread
over 15 files under three naming schemes, and ``R235_OK`` duplicated
``codes.R235_AUTH_OK``.  Replies with a variable part (``queued as <id>``, the
greeting with the host name) are still built where the variable is known.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import mailwright
from mailwright.smtp import Reply, codes

PACKAGE = Path(mailwright.__file__).parent
HOME = {PACKAGE / "smtp" / "codes.py", PACKAGE / "smtp" / "_replies.py"}


def _builds_reply(call: ast.Call) -> bool:
    func = call.func
    if isinstance(func, ast.Attribute):  # Reply.of(...)
        return func.attr == "of" and isinstance(func.value, ast.Name) and func.value.id == "Reply"
    return isinstance(func, ast.Name) and func.id in {"Reply", "R"}


def _is_name(call: ast.Call, name: str) -> bool:
    return isinstance(call.func, ast.Name) and call.func.id == name


def fixed_replies_outside_codes() -> list[str]:
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        if path in HOME:
            continue
        for node in ast.walk(ast.parse(path.read_text("utf-8"), str(path))):
            if not isinstance(node, ast.Call):
                continue
            # _commands._error(code, enhanced, text, line): a reply plus the command line.
            args = node.args[:3] if _is_name(node, "_error") else node.args
            if (_builds_reply(node) or _is_name(node, "_error")) and (
                args and all(isinstance(arg, ast.Constant) for arg in args)
            ):
                found.append(f"{path.relative_to(PACKAGE)}:{node.lineno}")
    return found


def test_fixed_replies_are_defined_only_in_codes():
    assert fixed_replies_outside_codes() == []


def test_codes_names_follow_one_scheme():
    replies = {name: value for name, value in vars(codes).items() if isinstance(value, Reply)}
    for name, reply in replies.items():
        assert re.fullmatch(r"R\d{3}_[A-Z0-9_]+", name), name
        assert name[1:4] == str(reply.code), name
