"""What the ``inat-fl`` commands share: the argparse parents and the parsing of ``-o`` and ``--set``.

:func:`data_location` is the one parent of the data-location flags (``--data-dir``, ``-o KEY=VALUE``,
``--images-dir``, ``--image-option KEY=VALUE``), given to every command that reads data, and
:func:`location` reads them back as one :class:`~inat_hf.source.Source`; :func:`config_overrides`
(``--set FIELD=VALUE``, parsed by :func:`parse_overrides`) and :func:`cache` (``--cache-dir``) are the other
shared flags.

Secrets never go on the command line: for Azure, set ``AZURE_STORAGE_CONNECTION_STRING`` (or
``AZURE_STORAGE_ACCOUNT_NAME`` with ``AZURE_STORAGE_SAS_TOKEN`` / ``AZURE_STORAGE_ACCOUNT_KEY``), which
adlfs reads by itself; ``-o KEY=VALUE`` passes non-secret fsspec options such as ``account_name``.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from inat_hf.source import Source

CACHE_HELP = (
    "cache folder, as the builder's cache_dir: manifests go to CACHE_DIR/inaturalist_fl (default: $INAT_FL_CACHE, "
    "else the datasets cache), shared with the builder"
)
SET_HELP = (
    "override a config field, e.g. train_split=train_mini, min_client_size=32, max_clients=none (repeatable; "
    "every field of inat_hf.config.INatFLConfig)"
)


def parse_storage_options(pairs: Sequence[str]) -> dict[str, Any] | None:
    """Fsspec options from ``-o KEY=VALUE`` pairs; secrets are refused (they belong in the environment)."""
    from inat_hf.storage.redaction import SECRET_OPTIONS  # on use: ``inat-fl --help`` imports no storage

    options: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise SystemExit(f"--option {pair!r}: expected KEY=VALUE")
        if key in SECRET_OPTIONS:
            raise SystemExit(
                f"--option {key}=...: secrets do not go on the command line (they end up in shell history and "
                "process lists); set AZURE_STORAGE_CONNECTION_STRING or AZURE_STORAGE_SAS_TOKEN instead"
            )
        options[key] = value
    return options or None


def parse_overrides(pairs: Sequence[str]) -> dict[str, Any]:
    """Config overrides from ``--set FIELD=VALUE`` pairs, typed and checked: :func:`inat_hf.cli.overrides.
    parse_overrides` (imported here on use, so that ``inat-fl --help`` stays quick).
    """
    from inat_hf.cli import overrides

    return overrides.parse_overrides(pairs)


def add_storage_option(parser: argparse.ArgumentParser | Any, help: str | None = None) -> None:
    """``-o/--option KEY=VALUE`` (repeatable): a non-secret fsspec option."""
    parser.add_argument("-o", "--option", action="append", default=[], metavar="KEY=VALUE", help=help)


def data_location(*, required: bool = True) -> argparse.ArgumentParser:
    """The parent parser of the data-location flags: ``--data-dir``, ``-o``, ``--images-dir``, ``--image-option``.

    ``required=False`` for a command that also takes the data folder as its first argument (``check``,
    ``metadata``); :func:`location` then takes whichever was given.
    """
    parent = argparse.ArgumentParser(add_help=False)
    group = parent.add_argument_group("where the data is")
    group.add_argument(
        "--data-dir", required=required, help="your iNat 2021 copy (or a replica): a data folder or fsspec URL"
    )
    add_storage_option(group, "fsspec option of the data (no secrets)")
    group.add_argument(
        "--images-dir", help="where the image files are, if apart from the metadata (default: beside it)"
    )
    group.add_argument(
        "--image-option", action="append", default=[], metavar="KEY=VALUE", help="fsspec option of --images-dir"
    )
    return parent


def location(args: argparse.Namespace, positional: str | None = None) -> Source:
    """Where the data is (:class:`~inat_hf.source.Source`), from the flags of :func:`data_location`;
    ``positional`` names the command's own argument for the data folder, if any.

    The images' options are the data's unless ``--image-option`` is given.
    """
    from inat_hf.source import Source  # on use: inat-fl --help stays quick

    data_dir = args.data_dir
    if positional is not None:
        given = getattr(args, positional)
        if given is not None and data_dir is not None and given != data_dir:
            raise SystemExit(f"inat-fl {args.command}: give the data folder once (as an argument or --data-dir)")
        data_dir = given if given is not None else data_dir
        if data_dir is None:
            raise SystemExit(f"inat-fl {args.command}: the data folder is missing (an argument or --data-dir)")
    return Source(
        data_dir,
        parse_storage_options(args.option),
        args.images_dir,
        parse_storage_options(args.image_option) if args.image_option else None,
    )


def config_overrides() -> argparse.ArgumentParser:
    """The parent parser of ``--set FIELD=VALUE`` (repeatable), read by :func:`parse_overrides`."""
    parent = argparse.ArgumentParser(add_help=False)
    parent.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE", help=SET_HELP)
    return parent


def cache() -> argparse.ArgumentParser:
    """The parent parser of ``--cache-dir``."""
    parent = argparse.ArgumentParser(add_help=False)
    parent.add_argument("--cache-dir", default=None, help=CACHE_HELP)
    return parent
