"""Training with Flower: the Flower App of ``flower_app/`` (``flwr run flower_app``).

:mod:`~inat_hf.train.flower.apps` (the ``ClientApp``), :mod:`~inat_hf.train.flower.server` (the ``ServerApp`` and
:func:`~inat_hf.train.flower.server.run_flower_simulation`), :mod:`~inat_hf.train.flower.runconfig` (the run and
node configs) and :mod:`~inat_hf.train.flower.nodedata` (a node's client rows). All but ``runconfig`` need
``flwr`` (the ``flower`` extra); the partitioner for Flower Datasets is :mod:`inat_hf.federated.partitioner`.
"""
