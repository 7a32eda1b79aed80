"""What a dataset and its partition look like: :mod:`~inat_hf.analysis.summary` (an images table: rows,
users, labels, biases), :mod:`~inat_hf.analysis.stats` (a partition's clients, sizes and label skew) and
:mod:`~inat_hf.analysis.plots` (client sizes, label mix), as ``inat-fl metadata``, ``stats`` and the card use.
"""
