"""Turning ``OSError``/``sqlite3.Error`` into a ``SpoolError`` an operator can act on."""

from __future__ import annotations

import errno

from mailwright.spool.store import SpoolError


def spool_error(action: str, exc: BaseException) -> SpoolError:
    """``SpoolError("<action>: <cause> [ERRNO]: <file>")`` chained to ``exc``.

    E.g. "0H2...: cannot write body: No space left on device [ENOSPC]: .../tmp/0H2...".
    """
    if isinstance(exc, OSError):
        name = errno.errorcode.get(exc.errno or 0, "")
        cause = f"{exc.strerror or exc}" + (f" [{name}]" if name else "")
        if exc.filename:
            cause += f": {exc.filename}"
    else:
        cause = f"{type(exc).__name__}: {exc}"
    err = SpoolError(f"{action}: {cause}")
    err.__cause__ = exc
    return err
