"""What a metadata load kept, dropped and nulled, file by file.

Every load accounts for every record: ``rows_in == rows_out + sum(skipped.values())``. The report travels
with the images table in its schema metadata (key :data:`REPORT_KEY`), so it survives slicing and Parquet.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import orjson
import pyarrow as pa

REPORT_KEY = b"inat_hf.metadata_report"


@dataclass
class FileReport:
    """The accounting of one metadata file.

    Attributes
    ----------
    source : str
        The file's URL, redacted.
    split : str
        ``train``, ``val``, ``public_test``, ``train_mini``, ...
    rows_in : int
        Image records in the file.
    rows_out : int
        Rows in the images table.
    skipped : dict of str to int
        Dropped rows per reason (only with ``on_invalid="skip"``).
    skipped_examples : dict of str to list of int
        Up to five record indexes per reason, to find them in the file.
    nulled : dict of str to int
        Values set to null but the row kept: ``invalid_latitude``, ``out_of_range_location``,
        ``invalid_date``, ...
    null_location : int
        Kept rows with no latitude/longitude (null in the file, or nulled).
    annotations_skipped : dict of str to int
        Annotations that point to no image (counted, never an image row).
    """

    source: str
    split: str
    rows_in: int = 0
    rows_out: int = 0
    skipped: dict[str, int] = field(default_factory=dict)
    skipped_examples: dict[str, list[int]] = field(default_factory=dict)
    nulled: dict[str, int] = field(default_factory=dict)
    null_location: int = 0
    annotations_skipped: dict[str, int] = field(default_factory=dict)

    @property
    def rows_skipped(self) -> int:
        """Dropped rows, all reasons."""
        return sum(self.skipped.values())


@dataclass
class MetadataReport:
    """The accounting of a whole load (one entry per file)."""

    files: list[FileReport] = field(default_factory=list)

    @property
    def rows_in(self) -> int:
        """Image records read, all files."""
        return sum(f.rows_in for f in self.files)

    @property
    def rows_out(self) -> int:
        """Rows in the images table."""
        return sum(f.rows_out for f in self.files)

    @property
    def rows_skipped(self) -> int:
        """Dropped rows, all files and reasons."""
        return sum(f.rows_skipped for f in self.files)

    def to_json(self) -> bytes:
        """Serialise (sorted keys, stable)."""
        return orjson.dumps([asdict(f) for f in self.files], option=orjson.OPT_SORT_KEYS)

    @classmethod
    def from_json(cls, data: bytes) -> MetadataReport:
        """Inverse of :meth:`to_json`."""
        return cls(files=[FileReport(**entry) for entry in orjson.loads(data)])

    def summary(self) -> str:
        """A few human-readable lines."""
        lines = []
        for f in self.files:
            line = f"{f.split}: {f.rows_in:,} records -> {f.rows_out:,} rows"
            if f.skipped:
                line += ", skipped " + ", ".join(f"{k}={v:,}" for k, v in f.skipped.items())
            if f.null_location:
                line += f", {f.null_location:,} without location"
            if f.nulled:
                line += ", nulled " + ", ".join(f"{k}={v:,}" for k, v in f.nulled.items())
            lines.append(f"{line} ({f.source})")
        return "\n".join(lines)


def attach_report(table: pa.Table, report: MetadataReport) -> pa.Table:
    """Return ``table`` with ``report`` in its schema metadata."""
    metadata = dict(table.schema.metadata or {})
    metadata[REPORT_KEY] = report.to_json()
    return table.replace_schema_metadata(metadata)


def metadata_report(table: pa.Table) -> MetadataReport:
    """The report of the load that made ``table`` (empty if it carries none)."""
    raw = (table.schema.metadata or {}).get(REPORT_KEY)
    return MetadataReport.from_json(raw) if raw else MetadataReport()
