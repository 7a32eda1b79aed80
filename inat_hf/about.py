"""What the dataset is, for every place that describes it (the builder's info, the dataset card)."""

from __future__ import annotations

from importlib import resources

PRETTY_NAME = "iNaturalist 2021, federated (clients by photographer, labels at any rank)"
HOMEPAGE = "https://github.com/visipedia/inat_comp/tree/master/2021"
"""The official iNat 2021 page, which states the terms of use."""
TERMS = "Images: their own CC licences (field 'license'); non-commercial research and education only."
CITATION = resources.files("inat_hf").joinpath("data/CITATION.bib").read_text(encoding="utf-8").strip()
"""BibTeX of the iNat 2021 paper and of the federated split by photographer (``inat_hf/data/CITATION.bib``)."""
