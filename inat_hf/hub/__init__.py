"""The Hub: :mod:`~inat_hf.hub.export` (Parquet per config and split, manifest-only by default),
:mod:`~inat_hf.hub.card` (the dataset card, prose in ``card_template.md``) and :mod:`~inat_hf.hub.push`.
"""
