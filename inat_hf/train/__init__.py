"""ViT fine-tuning on the clients: :mod:`~inat_hf.train.training` (data, model, central ``Trainer``) and
:mod:`~inat_hf.train.fedavg` (FedAvg and FedAvgM rounds). Needs the ``train`` extra.
"""
