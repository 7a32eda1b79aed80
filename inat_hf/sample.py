"""The synthetic replica under its first name: ``inat_hf.sample`` is :mod:`inat_hf.replica`, kept importable."""

import sys

from inat_hf import replica

sys.modules[__name__] = replica
