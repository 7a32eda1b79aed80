"""The Hub: the dataset card (:mod:`~inat_hf.hub.card`, prose in ``card_template.md``; written after the
files by :mod:`~inat_hf.hub.folder`, which also holds ``export_dataset``) and the upload
(:mod:`~inat_hf.hub.push`). The Parquet layout itself is :mod:`inat_hf.export`'s, written by :mod:`inat_hf.prepare`.
"""
