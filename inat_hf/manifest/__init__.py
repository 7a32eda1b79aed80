"""The manifest: the whole partition with no image bytes, the centre of the data flow.

:mod:`~inat_hf.manifest.build` (images table + config -> :class:`Manifest`, pure),
:mod:`~inat_hf.manifest.cache` (the one cache, keyed by the fingerprint) and
:mod:`~inat_hf.manifest.layout` (client-aligned row groups, shards, reading one client back).
"""

from inat_hf.manifest.build import Manifest, assign_clients, build_manifest, check_configs, user_codes
from inat_hf.manifest.cache import (
    MANIFEST_VERSION,
    ManifestKey,
    cache_root,
    load_config_metadata,
    load_or_build,
    load_or_build_manifest,
    locate,
    manifest_fingerprint,
    read_manifest,
    write_manifest,
)
from inat_hf.manifest.layout import client_row_groups, plan_shards, read_client_rows, read_rows, row_group_bounds

__all__ = [
    "MANIFEST_VERSION",
    "Manifest",
    "ManifestKey",
    "assign_clients",
    "build_manifest",
    "cache_root",
    "check_configs",
    "client_row_groups",
    "load_config_metadata",
    "load_or_build",
    "load_or_build_manifest",
    "locate",
    "manifest_fingerprint",
    "plan_shards",
    "read_client_rows",
    "read_manifest",
    "read_rows",
    "row_group_bounds",
    "user_codes",
    "write_manifest",
]
