"""From a TOML file or the command line to a validated ``Config``, or a ``ConfigError``.

``load_config`` reads the file, ``parse_config`` validates the document and resolves
relative paths against the file's folder (as nginx does for its prefix), and
``with_overrides`` applies ``serve --listen`` and ``--data-dir``.  When some fields
are invalid the checks between sections still run on the sections that are valid, so
every problem is reported in one pass.
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

from pydantic import TypeAdapter, ValidationError

from mailwright.config.domains import DomainConfig
from mailwright.config.errors import ConfigError, format_errors, is_cross_reference
from mailwright.config.listeners import ListenerConfig
from mailwright.config.root import Config, cross_reference_problems
from mailwright.config.tls import TlsConfig


def _partial_cross_references(data: dict[str, Any]) -> list[str]:
    """Cross-reference problems among the sections that are valid on their own, for
    when other fields are not (the model validator only runs on a valid document).

    An invalid section takes no part: domain checks involve only the domains, listener
    checks only the listeners and TLS, so nothing is guessed about a broken section.
    """
    sections: dict[str, Any] = {}
    for key, adapter in _SECTION_ADAPTERS.items():
        try:
            sections[key] = adapter.validate_python(data.get(key, _SECTION_DEFAULTS[key]()))
        except ValidationError:
            sections[key] = None
    domains = sections["domain"] or []
    tls = sections["tls"]
    listeners = sections["listener"] if tls is not None and sections["listener"] else []
    problems = cross_reference_problems(domains, listeners, tls or TlsConfig())
    return [f"{loc}: {msg}" for loc, msg in problems]


_SECTION_ADAPTERS: dict[str, TypeAdapter[Any]] = {
    "domain": TypeAdapter(list[DomainConfig]),
    "listener": TypeAdapter(list[ListenerConfig]),
    "tls": TypeAdapter(TlsConfig),
}
_SECTION_DEFAULTS: dict[str, Any] = {
    "domain": list,
    "listener": lambda: [{}],
    "tls": dict,
}


def parse_config(data: dict[str, Any], source: str = "<config>") -> Config:
    """Validate an already-parsed TOML document; raise ConfigError listing every problem."""
    try:
        config = Config.model_validate(data)
    except ValidationError as exc:
        errors = exc.errors()
        problems = [line for e in errors for line in format_errors(e)]
        if not any(is_cross_reference(e) for e in errors):  # field errors stopped it
            problems += _partial_cross_references(data)
        raise ConfigError(source, problems) from None
    if not config.data_dir.is_absolute() and source not in ("<config>", "<embedded>"):
        # A relative data_dir is taken relative to the config file, as nginx does for
        # its prefix: the server then behaves the same from any working directory.
        base = Path(source).resolve().parent
        config = config.model_copy(update={"data_dir": base / config.data_dir})
    if config.tls.certificates and source not in ("<config>", "<embedded>"):
        # Certificate paths too, for the same reason (absolute paths are kept as given).
        tls = config.tls.resolved(Path(source).resolve().parent)
        config = config.model_copy(update={"tls": tls})
    if source not in ("<config>", "<embedded>"):
        config = _resolve_password_files(config, Path(source).resolve().parent)
    return config


def _resolve_password_files(config: Config, base: Path) -> Config:
    """Relative ``password_file`` paths are relative to the config file, as above."""

    def resolved(item: Any) -> Any:
        if item.password_file is None or item.password_file.is_absolute():
            return item
        return item.model_copy(update={"password_file": base / item.password_file})

    return config.model_copy(
        update={
            "outbound": resolved(config.outbound),
            "transports": [resolved(t) for t in config.transports],
        }
    )


def load_config(path: Path | str) -> Config:
    """Read and validate a TOML file."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ConfigError(str(path), [f"cannot read file: {exc.strerror}"]) from None
    try:
        data = tomllib.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        raise ConfigError(str(path), ["file is not valid UTF-8"]) from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(str(path), [f"TOML syntax error: {exc}"]) from None
    return parse_config(data, str(path))


def with_overrides(
    config: Config,
    *,
    listeners: list[ListenerConfig] | None = None,
    data_dir: Path | None = None,
) -> Config:
    """``config`` with its listeners and/or data folder replaced (``serve --listen``
    and ``--data-dir``), validated again as a whole (two listeners on one port, a
    submissions listener without TLS); ``ConfigError`` from "command line"."""
    doc = config.model_dump()
    if listeners:
        doc["listeners"] = [listener.model_dump() for listener in listeners]
    if data_dir is not None:
        doc["data_dir"] = data_dir
    try:
        return Config.model_validate(doc)
    except ValidationError as exc:
        problems = [line for e in exc.errors() for line in format_errors(e)]
        raise ConfigError("command line", problems) from None
