"""A deterministic, faithful synthetic replica of iNaturalist 2021 (metadata and real JPEGs) at any scale.

Every test and benchmark of this project runs on it, in the official schema (``train.json``/``val.json``
and ``train/<image_dir_name>/<uuid>.jpg``), so that nothing needs the real 224 GB archive.

The model (all parameters are in :mod:`inat_hf.replica.taxonomy`, :mod:`inat_hf.replica.model` and
:mod:`inat_hf.replica.images`, each documented there):

* **Categories** (fixed): the 10,000 real species in real id order with all 12 official fields; the real
  3 kingdoms, 13 phyla and 51 classes with their real id ranges (so the supercategory counts are real);
  273 orders and 1,103 families, real where known and otherwise synthesised under the rules of the real list
  (ids sorted by ``image_dir_name``; every taxon a contiguous, nested run of ids; names rising inside
  their parent; 4,884 distinct genus strings).
* **Train counts** (fixed): at most 300 per species, about 6,200 species at the cap, the smallest 152, the
  supercategory totals of the real README and 2,686,843 in all (full scale). Val: 10 per species.
* **Users** (seeded): 158,873 distinct ``rights_holder`` at full scale, log-normal sizes (mean 16.9), a
  home region and 1-3 taxonomic interests each; images are paired with users by sorting keys, so both
  margins are exact and clients are non-IID in labels and location.
* **Image records** (seeded): the official key order; ids 0..N-1 (train) then N..N+V-1 (val); uuid4 file
  names; realistic sizes, licences, dates, locations (3-5% null) and raw ``location_uncertainty``.
  Annotations are written in a shuffled order (a trap for loaders that pair lists by position).
* **JPEGs**: real JPEG bytes of the record's exact size whose content shows the family, genus and species;
  with ``image_side`` (e.g. 32), every record is drawn that size, so that millions of files stay small.
  Written one species per task, in threads or processes, resumably (:mod:`~inat_hf.replica.jpeg_files`).

Same ``(scale, seed)``, byte-identical files.

Modules: :mod:`~inat_hf.replica.build` (the replica in memory, and :func:`write_sample`),
:mod:`~inat_hf.replica.taxonomy` (with :mod:`~inat_hf.replica.taxonomy_data` and
:mod:`~inat_hf.replica.taxon_names`), :mod:`~inat_hf.replica.model` (users, counts, records, with
:mod:`~inat_hf.replica.user_names`), :mod:`~inat_hf.replica.images` (JPEGs), :mod:`~inat_hf.replica.jpeg_files`
(writing them) and
:mod:`~inat_hf.replica.json_writer` (the official files).
"""

from inat_hf.replica.build import (
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
