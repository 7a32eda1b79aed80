"""The federated algorithms by name: Flower's strategies that the Flower App and the baselines grid run
(:func:`inat_hf.train.flower.server.make_strategy` builds them). No import: the command line reads it.
"""

STRATEGIES = ("fedavg", "fedavgm", "fedprox", "fedadam", "fedyogi")
STRATEGY_NAMES = {"fedavg": "FedAvg", "fedavgm": "FedAvgM", "fedprox": "FedProx", "fedadam": "FedAdam",
                  "fedyogi": "FedYogi"}  # fmt: skip
"""Flower's class of each strategy name."""
