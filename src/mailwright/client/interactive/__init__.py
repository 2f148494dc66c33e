"""``mailwright session HOST[:PORT]``: telnet done right.

A prompt with line editing, history and completion; each line goes out through the
protocol core (``smtp.ClientConnection``, so the wire and the states are the core's)
and each reply comes back with its short explanation.  Modules, one concern each:

* ``protocol`` -- the line protocol state: typed lines -> octets, octets -> replies,
  the three modes (commands, the message after DATA, raw);
* ``data`` -- DATA framing through the core's body writer (dot-stuffing, the lone dot);
* ``escapes`` -- raw mode's ``\\r``/``\\n`` syntax;
* ``auth`` -- the ``auth MECH USER`` helper's SASL exchange;
* ``completion`` -- Tab: verbs, helpers and what EHLO advertised;
* ``transcript`` -- the record with swaks' direction markers, saved on request;
* ``display`` -- colours and explanations on the terminal;
* ``wire`` -- the socket (asyncio), TLS on connect and STARTTLS;
* ``options`` -- target, ``--dns``, history file;
* ``terminal`` -- the prompt loop that ties them together.
"""

from mailwright.client.interactive.options import (
    history_path,
    parse_dns,
    parse_host_port,
    prepare_history,
    resolve,
)
from mailwright.client.interactive.terminal import (
    EXIT_CONNECT,
    EXIT_LOST,
    EXIT_OK,
    SessionOptions,
    SessionStartError,
    run_session,
)

__all__ = [
    "EXIT_CONNECT",
    "EXIT_LOST",
    "EXIT_OK",
    "SessionOptions",
    "SessionStartError",
    "history_path",
    "parse_dns",
    "parse_host_port",
    "prepare_history",
    "resolve",
    "run_session",
]
