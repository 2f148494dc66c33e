"""``mailwright explain CODE...``: what a reply code or a pasted reply means.

The knowledge and the parsing live in ``client.explain``; this module only groups the
arguments into inputs and prints.  Grouping: ``451 4.7.1`` (a basic code followed by an
enhanced code) is one reply, a basic code followed by words is one pasted line, any
other code stands alone (``explain 550 5.7.26 421`` explains three); ``-`` reads
standard input (a multi-line reply or a bounce pasted whole).
"""

from __future__ import annotations

import json
import re
import sys
import textwrap

import click

from mailwright.client.explain import ExplainError, Explanation, explain_reply

EXIT_USAGE = 2
# Human output wraps at this width, a terminal's customary 80 columns.
WIDTH = 80
_LABEL = 11  # "  meaning  " — the labels' column

_BASIC = re.compile(r"\d{3}")
_ENHANCED = re.compile(r"\d\.\d{1,3}\.\d{1,3}")

EPILOG = """\b
Input forms:
  550                         a basic reply code (RFC 5321 section 4.2)
  5.7.1                       an enhanced status code (RFC 3463, IANA registry)
  451 4.7.1                   both, as a server sends them
  '550 5.7.1 <x@y>: Relay access denied'
                              a whole reply line, as pasted from a log
  -                           standard input: a multi-line reply (250-...),
                              a bounce ("host ... said: 550 5.1.1 ...",
                              "SMTP error from remote mail server after ...")
                              or a DSN's Status:/Diagnostic-Code: fields

\b
Examples:
  mailwright explain 550
  mailwright explain 451 4.7.1
  mailwright explain 5.7.26 4.7.28 421
  mailwright explain '550 5.1.1 <bob@example.org>: User unknown'
  mailwright explain --json 5.2.2 | jq .[0].fix
  grep 'said:' /var/log/mail.log | tail -1 | mailwright explain -

\b
Exit status:
  0  every input was explained
  2  an input holds no SMTP reply code (one line on stderr names it)
"""


def group_arguments(args: tuple[str, ...]) -> list[str]:
    """The inputs the arguments make (see the module docstring)."""
    inputs: list[str] = []
    i = 0
    while i < len(args):
        arg = args[i]
        if _BASIC.fullmatch(arg) and i + 1 < len(args):
            following = args[i + 1]
            if _ENHANCED.fullmatch(following):
                # "451 4.7.1 text words..." is one reply even unquoted.
                rest = list(args[i + 2 :])
                words = []
                while rest and not _is_code(rest[0]):
                    words.append(rest.pop(0))
                inputs.append(" ".join([arg, following, *words]))
                i += 2 + len(words)
                continue
            if not _is_code(following):
                words = []
                j = i + 1
                while j < len(args) and not _is_code(args[j]):
                    words.append(args[j])
                    j += 1
                inputs.append(" ".join([arg, *words]))
                i = j
                continue
        inputs.append(arg)
        i += 1
    return inputs


def _is_code(word: str) -> bool:
    """True for a word that starts an input of its own: a code, ``-``, or a quoted
    argument (one with spaces: the shell kept it whole, so it is a whole reply)."""
    return (
        bool(_BASIC.fullmatch(word) or _ENHANCED.fullmatch(word))
        or word == "-"
        or any(c.isspace() for c in word)
    )


def _field(label: str, value: str) -> list[str]:
    return textwrap.wrap(
        value,
        WIDTH,
        initial_indent=f"  {label:<7}  ",
        subsequent_indent=" " * _LABEL,
        break_on_hyphens=False,
    ) or [f"  {label}"]


def render(e: Explanation) -> str:
    """The human form: a heading line, then labelled lines wrapped at ``WIDTH``."""
    head = " ".join(p for p in (str(e.code) if e.code is not None else "", e.enhanced) if p)
    lines = [f"{head}  {e.title}"]
    if e.text:
        text_lines = e.text.splitlines()
        lines.append(f"  text     {text_lines[0]}")
        lines.extend(f"           {t}" for t in text_lines[1:])
    outcome = {True: "permanent failure", False: "temporary failure", None: "success"}
    if e.code is not None and e.code // 100 == 3:
        lines += _field("outcome", "intermediate: the server waits for more")
    else:
        lines += _field("outcome", outcome[e.permanent])
    lines += _field("meaning", e.detail)
    if e.source:
        lines += _field("wording", e.source)
    lines += _field("defined", e.rfc)
    if not e.registered:
        lines += _field("note", "not in the RFC/IANA tables; read from its digits")
    lines += _field("fix", e.fix)
    return "\n".join(lines)


@click.command(epilog=EPILOG, context_settings={"max_content_width": 100})
@click.argument("codes", nargs=-1, required=True, metavar="CODE...")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON array, one object per input.")
def explain(codes: tuple[str, ...], as_json: bool) -> None:
    """Explain SMTP reply codes and replies: meaning, defining RFC, usual fix.

    Reads basic reply codes (550), enhanced status codes (5.7.1), both (451 4.7.1),
    whole reply lines and bounce sentences, and recognises the wording of Postfix,
    Exim, Gmail and Microsoft.  The same explanations appear beside each reply in
    mailwright send, probe and session.
    """
    inputs = []
    for item in group_arguments(codes):
        if item == "-":
            inputs.append(sys.stdin.read())
        else:
            inputs.append(item)
    explained: list[Explanation] = []
    for item in inputs:
        try:
            explained.append(explain_reply(item))
        except ExplainError as exc:
            click.echo(f"mailwright: explain: {exc}", err=True)
            sys.exit(EXIT_USAGE)
    if as_json:
        click.echo(json.dumps([e.as_dict() for e in explained], indent=2, ensure_ascii=False))
        return
    click.echo("\n\n".join(render(e) for e in explained))
