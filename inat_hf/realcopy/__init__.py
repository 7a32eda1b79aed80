"""Working on a real copy of iNat 2021: :mod:`~inat_hf.realcopy.extract` (the official ``.tar.gz`` archives
into files at any fsspec URL, md5 verified) and :mod:`~inat_hf.realcopy.check` (a preflight of a copy:
metadata counts, credentials, a sample of images, timing).
"""
