"""mailwright's sans-IO SMTP protocol core.

Bytes in, events out; replies in, bytes out -- for both roles.  This package imports
no asyncio, socket, ssl, DNS or file code (``tests/smtp/test_no_io.py`` enforces it),
so every rule here is testable byte by byte.
"""

from mailwright.smtp._address import Address, AddressError, parse_path, to_ascii_domain
from mailwright.smtp._client import ClientConnection, normalize_line_endings
from mailwright.smtp._commands import COMMANDS, parse_command, write_command
from mailwright.smtp._data import DataReader, has_bare_line_ending
from mailwright.smtp._errors import LocalProtocolError, ProtocolError, RemoteProtocolError
from mailwright.smtp._events import (
    Auth,
    AuthResponse,
    Bdat,
    CommandError,
    ConnectionClosed,
    Data,
    DataChunk,
    DataError,
    Ehlo,
    EndOfData,
    Event,
    Expn,
    Helo,
    Help,
    MailFrom,
    Noop,
    Quit,
    RcptTo,
    Rset,
    StartTls,
    Vrfy,
)
from mailwright.smtp._extensions import ehlo_reply, parse_ehlo
from mailwright.smtp._params import MailParams, RcptParams
from mailwright.smtp._replies import Reply
from mailwright.smtp._sasl import SERVER_MECHANISMS, server_mechanism
from mailwright.smtp._sasl_client import choose_mechanism, client_mechanism
from mailwright.smtp._server import (
    DEFAULT_EXTENSIONS,
    NEED_DATA,
    PAUSED,
    ServerConnection,
    ServerOptions,
    Transaction,
)
from mailwright.smtp._state import State
from mailwright.smtp._xtext import XtextError, decode_xtext, encode_xtext

__all__ = [
    "COMMANDS",
    "DEFAULT_EXTENSIONS",
    "NEED_DATA",
    "PAUSED",
    "SERVER_MECHANISMS",
    "Address",
    "AddressError",
    "Auth",
    "AuthResponse",
    "Bdat",
    "ClientConnection",
    "CommandError",
    "ConnectionClosed",
    "Data",
    "DataChunk",
    "DataError",
    "DataReader",
    "Ehlo",
    "EndOfData",
    "Event",
    "Expn",
    "Helo",
    "Help",
    "LocalProtocolError",
    "MailFrom",
    "MailParams",
    "Noop",
    "ProtocolError",
    "Quit",
    "RcptParams",
    "RcptTo",
    "RemoteProtocolError",
    "Reply",
    "Rset",
    "ServerConnection",
    "ServerOptions",
    "StartTls",
    "State",
    "Transaction",
    "Vrfy",
    "XtextError",
    "choose_mechanism",
    "client_mechanism",
    "decode_xtext",
    "ehlo_reply",
    "encode_xtext",
    "has_bare_line_ending",
    "normalize_line_endings",
    "parse_command",
    "parse_ehlo",
    "parse_path",
    "server_mechanism",
    "to_ascii_domain",
    "write_command",
]
