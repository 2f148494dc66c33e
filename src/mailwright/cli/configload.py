"""Loading the configuration for a command: one line per problem and exit status 2.

Its own module so that the subcommand modules and ``cli.main`` (which registers them)
both import it, instead of a subcommand importing ``main`` back (an import cycle).
"""

from __future__ import annotations

import sys
from pathlib import Path

import click

from mailwright.config import Config, ConfigError, load_config

# Exit status for configuration errors (as sysexits' EX_USAGE family; the issue asks 2).
EXIT_CONFIG = 2


def load_or_exit(path: Path | None) -> Config:
    if path is None:
        return Config.embedded()
    try:
        return load_config(path)
    except ConfigError as exc:
        for line in str(exc).splitlines():
            click.echo(f"mailwright: {line}", err=True)
        sys.exit(EXIT_CONFIG)
