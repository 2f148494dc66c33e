"""The debug log: stdlib ``logging`` for diagnostics, apart from the mail log.

The mail log (``mailwright.obs.maillog``) is the record of mail events for operators;
this is the developer-facing log of everything else (stack traces, retries, config
warnings).  All mailwright modules log to ``logging.getLogger(__name__)``, i.e. under
the ``mailwright`` logger, which this module configures:

* level DEBUG when ``LogConfig.debug`` is set, WARNING otherwise (quiet by default);
* one handler on standard error (or a given stream), UTC timestamps with
  milliseconds, the same format as the mail log's;
* messages escaped like mail-log values, so peer-supplied text cannot forge lines
  (tracebacks keep their line breaks: they come from us).

We configure the ``mailwright`` logger, not the root logger, so an embedding
application keeps control of its own logging (``asyncio``'s warnings still reach
stderr through the stdlib's last-resort handler).
"""

from __future__ import annotations

import logging
import sys
import time
from typing import TextIO

from mailwright.config import LogConfig
from mailwright.obs.maillog import escape_control

LOGGER_NAME = "mailwright"
LOG_FORMAT = "%(asctime)s.%(msecs)03dZ %(levelname)s %(name)s: %(message)s"
DATE_FORMAT = "%Y-%m-%dT%H:%M:%S"
_HANDLER_MARK = "_mailwright_debuglog"  # lets a second setup replace our handler


class SafeFormatter(logging.Formatter):
    """Formats in UTC and escapes control characters in the message text."""

    # mypy binds a function stored on a class as a method (dropping its first
    # parameter); a builtin is not bound, so logging calls gmtime(secs) as intended.
    converter = time.gmtime  # type: ignore[assignment]

    def formatMessage(self, record: logging.LogRecord) -> str:
        record.message = escape_control(record.message)
        return super().formatMessage(record)


def setup_debug_log(
    config: LogConfig | None = None, stream: TextIO | None = None
) -> logging.Logger:
    """Configure the ``mailwright`` logger from ``config`` and return it.  Idempotent."""
    debug = bool(config and config.debug)
    handler = logging.StreamHandler(stream if stream is not None else sys.stderr)
    handler.setFormatter(SafeFormatter(LOG_FORMAT, DATE_FORMAT))
    setattr(handler, _HANDLER_MARK, True)

    logger = logging.getLogger(LOGGER_NAME)
    for old in [h for h in logger.handlers if getattr(h, _HANDLER_MARK, False)]:
        logger.removeHandler(old)
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG if debug else logging.WARNING)
    logger.propagate = False  # our handler prints it; do not print it twice via root
    return logger
