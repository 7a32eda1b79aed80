"""The synthetic replica under its first name: ``inat_hf.sample`` is :mod:`inat_hf.replica`, kept importable."""

from inat_hf.replica import *  # noqa: F403
from inat_hf.replica import __all__ as __all__
