"""``python -m inat_hf.cli``: the same as ``inat-fl``."""

import sys

from inat_hf.cli import main

sys.exit(main())
