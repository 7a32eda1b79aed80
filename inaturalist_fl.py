"""iNaturalist 2021 as a federated dataset: the HuggingFace ``datasets`` builder ``inaturalist_fl``.

Configs are ``{rank}_{scheme}`` (default ``family_user``): rank in kingdom, phylum, class, order, family,
genus, species; scheme in user (one client per photographer), geo1k (adaptive spatial cells), dirichlet
(label skew), iid. Any config field can be overridden by keyword (``min_client_size=32``).

With ``datasets`` 4 or later, import the class and call it (loading scripts no longer run)::

    from inaturalist_fl import INaturalistFL

    builder = INaturalistFL(config_name="family_user", data_dir="az://inaturalist/2021")
    builder.download_and_prepare(num_proc=4)
    train = builder.as_dataset("train")

With ``datasets==3.6.0`` this file is also a loading script::

    load_dataset("inaturalist_fl.py", "family_user", data_dir=..., trust_remote_code=True)

The implementation lives in the ``inat_hf`` package (``inat_hf.builder``).
"""

from inat_hf.builder import INatFLBuilder
from inat_hf.config import INatFLConfig

__all__ = ["INatFLConfig", "INaturalistFL"]


class INaturalistFL(INatFLBuilder):
    """iNaturalist 2021 split into federated clients, labelled at any taxonomic rank."""
