"""The ``inat-fl`` command line: one module per command, as ``datasets``' own ``commands/``.

:mod:`~inat_hf.cli.common` holds what the commands share (the one parent parser of the data-location
flags ``--data-dir``, ``-o``, ``--images-dir``, ``--image-option``; ``--set`` and ``--cache-dir``); each
other module registers one command (``add_parser``) and runs it (``run``): ``export``, ``prepare``,
``push``, ``demo``, ``sample``, ``metadata``, ``stats``, ``card``, ``baselines``, ``extract``, ``check``.

Secrets never go on the command line: for Azure, set ``AZURE_STORAGE_CONNECTION_STRING`` (or
``AZURE_STORAGE_ACCOUNT_NAME`` with ``AZURE_STORAGE_SAS_TOKEN`` / ``AZURE_STORAGE_ACCOUNT_KEY``), which adlfs
reads by itself; ``--option KEY=VALUE`` passes non-secret fsspec options such as ``account_name``.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from inat_hf.cli import baselines, card, check, demo, export, extract, metadata, prepare, push, sample, stats
from inat_hf.cli.common import parse_overrides, parse_storage_options
from inat_hf.errors import InatError

COMMANDS = (export, prepare, push, demo, sample, metadata, stats, card, baselines, extract, check)
"""The command modules, in the order of ``inat-fl --help``."""


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``inat-fl``: each command module adds its own sub-parser."""
    parser = argparse.ArgumentParser(prog="inat-fl", description="iNaturalist 2021 as a federated dataset.")
    sub = parser.add_subparsers(dest="command", required=True)
    for command in COMMANDS:
        command.add_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``inat-fl``; project errors print one clear line and exit with status 2."""
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except (InatError, ValueError) as err:
        print(f"inat-fl {args.command}: error: {err}", file=sys.stderr)
        return 2


__all__ = ["build_parser", "main", "parse_overrides", "parse_storage_options"]
