"""The synthetic replica under its first name: ``inat_hf.sample`` is :mod:`inat_hf.replica`, kept importable."""

from inat_hf.replica import (
    LICENSES,
    SCALES,
    Replica,
    SampleCounts,
    Scale,
    build_replica,
    get_scale,
    species_categories,
    write_sample,
)

__all__ = [
    "LICENSES",
    "SCALES",
    "Replica",
    "SampleCounts",
    "Scale",
    "build_replica",
    "get_scale",
    "species_categories",
    "write_sample",
]
