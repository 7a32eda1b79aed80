"""Where the data is: :class:`Source`, the metadata and the images, each with its storage options.

A copy of iNat 2021 is read from two places: the metadata (``data_dir``: a data folder, or one metadata file
such as ``train.json``) and the images (``images_dir``). By default the images sit beside the metadata: in
``data_dir`` itself, or in the folder holding it when ``data_dir`` names one metadata file. That rule lives
here and nowhere else (:attr:`Source.images_url`). The images' storage options default to the metadata's;
``image_storage_options={}`` lets adlfs read the ``AZURE_STORAGE_*`` environment for the images alone.

::

    from inat_hf.source import Source

    source = Source("az://inaturalist/2021", {"account_name": "myaccount"},
                    images_dir="az://inat-images/2021")
    source.metadata     # a storage.Location, resolved once, on first use
    source.images       # the images' Location (here: another container, the same account)

A Source is frozen, hashable, equal to another with the same URLs and options, and picklable to Dask and
``num_proc`` workers (its resolved Locations travel with it and keep their Azure limits). Its ``repr``
shows the URLs redacted and the option names only, never a value (``str`` is the same).
"""

from __future__ import annotations

import functools
import os
import posixpath
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from inat_hf import storage
from inat_hf.metadata import is_file_url
from inat_hf.storage.redaction import redact, secrets_of

PathLike = str | os.PathLike[str]


@dataclass(frozen=True, repr=False)
class Source:
    """The metadata location and the images location, each with its fsspec storage options.

    Parameters
    ----------
    data_dir : str or path
        The metadata: a data folder (official layout or the processed CSV) or one metadata file, as any fsspec
        URL or a local path.
    storage_options : mapping, optional
        fsspec options (credentials) of ``data_dir``; never shown.
    images_dir : str or path, optional
        The folder that the metadata's ``file_name`` values are relative to, when the images lie apart from
        the metadata (another container, account or prefix). Default: beside the metadata
        (:attr:`images_url`).
    image_storage_options : mapping, optional
        fsspec options of the images. Default (None): ``storage_options``; ``{}``: none, so that adlfs reads
        the ``AZURE_STORAGE_*`` environment for the images alone.

    Raises
    ------
    ValueError
        If ``data_dir`` is empty, or an options argument is not a mapping.
    """

    data_dir: str
    storage_options: Mapping[str, Any] | None = None
    images_dir: str | None = None
    image_storage_options: Mapping[str, Any] | None = None

    def __post_init__(self) -> None:
        if self.data_dir is None or not os.fspath(self.data_dir):
            raise ValueError(
                "Source needs data_dir: the URL of your copy of iNat 2021 (a data folder or one metadata file), "
                "e.g. 'az://inaturalist/2021', or a replica written by `inat-fl sample DIR`"
            )
        object.__setattr__(self, "data_dir", os.fspath(self.data_dir))
        if self.images_dir is not None:
            object.__setattr__(self, "images_dir", os.fspath(self.images_dir))
        for name in ("storage_options", "image_storage_options"):
            value = getattr(self, name)
            if value is not None and not isinstance(value, Mapping):
                raise ValueError(f"Source {name} must be a mapping of fsspec options, not {type(value).__name__}")
            copied = None if value is None else dict(value)  # a copy: later changes to the caller's dict stay out
            if name == "storage_options" and not copied:
                copied = None  # no metadata options: {} and None are the same (not so for the images: see above)
            object.__setattr__(self, name, copied)

    @classmethod
    def of(
        cls,
        data_dir: Source | PathLike,
        storage_options: Mapping[str, Any] | None = None,
        images_dir: PathLike | None = None,
        image_storage_options: Mapping[str, Any] | None = None,
    ) -> Source:
        """``data_dir`` if it is a Source already, else a Source of the four arguments.

        The functions that take a Source also take its four keyword arguments as a convenience; this is how
        they make one. A Source together with any of the other arguments is a ``ValueError`` (which would win
        is not clear).
        """
        if isinstance(data_dir, Source):
            given = [n for n, v in (("storage_options", storage_options), ("images_dir", images_dir),
                                    ("image_storage_options", image_storage_options)) if v is not None]  # fmt: skip
            if given:
                raise ValueError(f"give a Source or its arguments, not both: a Source was given with {given}")
            return data_dir
        return cls(os.fspath(data_dir), storage_options, images_dir, image_storage_options)  # type: ignore[arg-type]

    @property
    def images_url(self) -> str:
        """The URL the images are read from: ``images_dir``, else beside the metadata (``data_dir``, or the
        folder holding it when it names one metadata file). THE one place of that rule.
        """
        if self.images_dir is not None:
            return self.images_dir
        if not is_file_url(self.data_dir):
            return self.data_dir
        if "://" not in self.data_dir:
            return os.path.dirname(os.path.abspath(self.data_dir))
        return posixpath.dirname(self.data_dir.split("?", 1)[0].rstrip("/"))

    @property
    def image_options(self) -> dict[str, Any] | None:
        """The images' storage options: ``image_storage_options``, else the metadata's."""
        options = self.storage_options if self.image_storage_options is None else self.image_storage_options
        return None if options is None else dict(options)

    @functools.cached_property
    def metadata(self) -> storage.Location:
        """The metadata's Location (``data_dir`` with ``storage_options``), resolved on first use, once.

        Raises
        ------
        inat_hf.errors.StorageAuthError, inat_hf.errors.StorageError
            Bad credentials, or an unknown protocol (redacted).
        """
        return storage.resolve(self.data_dir, self.storage_options)

    @functools.cached_property
    def images(self) -> storage.Location:
        """The images' Location (:attr:`images_url` with :attr:`image_options`), resolved on first use, once."""
        return storage.resolve(self.images_url, self.image_options)

    def keywords(self) -> dict[str, Any]:
        """The four constructor arguments by name, for the functions that still take them one by one."""
        return {
            "data_dir": self.data_dir,
            "storage_options": self.storage_options,
            "images_dir": self.images_dir,
            "image_storage_options": self.image_storage_options,
        }

    def __hash__(self) -> int:
        """Hash of the URLs (options are mappings; equal Sources have equal URLs, so equal hashes)."""
        return hash((self.data_dir, self.images_dir))

    def __repr__(self) -> str:
        """The constructor's arguments, the URLs redacted and the options by name only (never a value)."""
        images = None if self.images_dir is None else self.redact(self.images_dir)
        parts = [f"data_dir={self.redact(self.data_dir)!r}", f"images_dir={images!r}"]
        for name in ("storage_options", "image_storage_options"):
            options = getattr(self, name)
            if options is not None:
                parts.append(f"{name}=<hidden: {', '.join(sorted(map(str, options)))}>" if options else f"{name}={{}}")
        return f"Source({', '.join(parts)})"

    __str__ = __repr__

    def redact(self, text: str) -> str:
        """Return ``text`` with this Source's secrets (both options' values, and any secret-looking pattern
        such as a SAS signature) replaced: ``source.redact(source.images_url)`` is safe to show.
        """
        options = {"data": self.storage_options or {}, "images": self.image_storage_options or {}}
        return redact(text, secrets_of(options))
