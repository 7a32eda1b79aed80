"""Training with Flower: :mod:`~inat_hf.train.flower.apps` (the ``ClientApp``) and
:mod:`~inat_hf.train.flower.server` (the ``ServerApp`` and :func:`~inat_hf.train.flower.server.run_flower_simulation`).
Both need ``flwr`` (the ``flower`` extra); the partitioner for Flower Datasets is :mod:`inat_hf.federated.partitioner`.
"""
