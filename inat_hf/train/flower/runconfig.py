"""The Flower App's run config (``[tool.flwr.app.config]`` of ``flower_app/pyproject.toml``) and node config.

``flwr run flower_app`` gives the ServerApp and every ClientApp the run config: the table of the app's
``pyproject.toml`` with the ``--run-config`` overrides (flat keys, TOML values; ``""`` and ``0`` stand for
"not given", TOML having no null). :meth:`AppConfig.from_run_config` reads and checks it::

    config = AppConfig.from_run_config(context.run_config)
    config.source, config.model, config.settings, config.num_nodes

Keys: ``config`` (the config name) and ``set`` (config fields, ``"FIELD=VALUE ..."``, builder only); the
data: ``data-dir`` (a data folder for the builder) or ``export`` (an export or ``inat-fl prepare`` folder),
``images`` (your copy of the images), ``storage-options`` (non-secret fsspec options, ``"KEY=VALUE ..."``),
``cache-dir``, ``num-proc``; the model: ``model`` (a size of
:data:`~inat_hf.train.training.VIT_SIZES`, ``tiny`` or ``base``, for a random ViT; else a checkpoint name or
path) and ``new-head``; the federation: ``strategy`` (``fedavg``, ``fedavgm``, ``fedprox``, ``fedadam`` or
``fedyogi``: Flower's strategies), ``server-lr`` (FedAvgM's, or FedAdam's and FedYogi's ``eta``),
``server-momentum`` (FedAvgM's, or their ``beta_1``), ``proximal-mu`` (FedProx's mu),
``tau`` (FedAdam's and FedYogi's adaptivity), ``rounds``, ``num-nodes`` (the
SuperNodes the server waits for), ``clients-per-round`` (a count, or a fraction of ``num-nodes`` when below
1), ``node-wait-seconds``; local training: ``local-epochs``, ``max-local-steps``, ``batch-size``, ``lr``,
``optimizer``, ``weight-decay``, ``workers``; evaluation and output: ``eval-batch-size``, ``val-limit``,
``seed``, ``out`` (the folder of ``metrics.json``, ``metrics.csv`` and ``accuracy.png``, written by the
ServerApp).

A SuperNode reads its own copy: the node config (``flower-supernode --node-config``) names the node's
``partition-id`` (its client: the ``i``-th of the train split in client-id order), ``num-partitions`` and,
optionally, its own ``data-dir`` or ``export``, ``images`` and ``cache-dir`` (:func:`node_source`), which
replace the run config's. Credentials never go in either config: they come from each machine's environment
(``AZURE_STORAGE_CONNECTION_STRING``, ``AZURE_STORAGE_SAS_TOKEN``, ... see :mod:`inat_hf.storage`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from inat_hf.storage.redaction import SECRET_OPTIONS
from inat_hf.train.data import TrainingData
from inat_hf.train.fedavg import FedAvgSettings
from inat_hf.train.strategies import STRATEGIES, STRATEGY_NAMES
from inat_hf.train.training import VIT_SIZES, LocalSettings, make_model, make_processor

NODE_DATA_KEYS = ("data-dir", "export", "images", "cache-dir")
"""The node config keys with which a SuperNode names its own copy of the data."""
_WHERE = "[tool.flwr.app.config] of flower_app/pyproject.toml, or flwr run --run-config"


@dataclass(frozen=True)
class ModelSpec:
    """The ViT every node builds: ``checkpoint`` (a name or path), or a random ViT of ``size``."""

    checkpoint: str | None = None
    size: str = "tiny"
    new_head: bool = False

    def processor(self) -> Any:
        """The image processor of the model (its input size and normalisation)."""
        return make_processor(checkpoint=self.checkpoint, size=self.size)

    def build(self, labels: list[str]) -> Any:
        """The model over ``labels`` (see :func:`inat_hf.train.training.make_model`)."""
        return make_model(labels, checkpoint=self.checkpoint, size=self.size, new_head=self.new_head)


def _get(config: Mapping[str, Any], key: str, kind: type | tuple[type, ...], where: str = _WHERE) -> Any:
    """``config[key]`` if it is of ``kind`` (an int is a float too; a bool is neither), else a ValueError."""
    if key not in config:
        raise ValueError(f"the Flower run config has no {key!r}: add it to {where}; keys: {sorted(config)}")
    value = config[key]
    kinds = kind if isinstance(kind, tuple) else (kind,)
    if float in kinds and int not in kinds and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if (isinstance(value, bool) and bool not in kinds) or not isinstance(value, kinds):
        names = " or ".join(k.__name__ for k in kinds)
        raise ValueError(f"{key} = {value!r} in the Flower run config: expected {names} (set it in {where})")
    return value


def _optional(value: str) -> str | None:
    return value.strip() or None


def parse_pairs(text: str, key: str) -> dict[str, str]:
    """``"KEY=VALUE KEY=VALUE"`` as a dict; a secret key (``account_key``, ``sas_token``, ...) is refused.

    Raises
    ------
    ValueError
        A pair without ``=``, or a secret, naming the run config ``key``.
    """
    pairs: dict[str, str] = {}
    for pair in text.split():
        name, sep, value = pair.partition("=")
        if not sep or not name:
            raise ValueError(f"{key} = {text!r} in the Flower run config: expected KEY=VALUE pairs, not {pair!r}")
        if name in SECRET_OPTIONS:
            raise ValueError(
                f"{key}: {name}=... is a secret, and the run config is sent to every node and kept by the "
                "SuperLink; set it in each machine's environment instead (AZURE_STORAGE_CONNECTION_STRING or "
                "AZURE_STORAGE_SAS_TOKEN)"
            )
        pairs[name] = value
    return pairs


def model_spec(model: str, new_head: bool = False) -> ModelSpec:
    """``model``: a size of ``VIT_SIZES`` (a random ViT), else a checkpoint name or path."""
    if model in VIT_SIZES:
        return ModelSpec(size=model, new_head=new_head)
    return ModelSpec(checkpoint=model, new_head=new_head)


def run_source(config: Mapping[str, Any], where: str = _WHERE) -> TrainingData:
    """The data the run config names (its ``config``, ``set``, data location and ``storage-options``).

    Raises
    ------
    ValueError
        Neither or both of ``data-dir`` and ``export``, a bad ``set`` field, or a secret in ``storage-options``.
    """
    from inat_hf.cli.overrides import parse_overrides

    data_dir, export = _optional(_get(config, "data-dir", str, where)), _optional(_get(config, "export", str, where))
    if (data_dir is None) == (export is None):
        raise ValueError(
            f"the Flower run config names {'both' if data_dir else 'neither'} data-dir and export: give one "
            f"(data-dir = a data folder for the builder; export = an inat-fl export or prepare folder), in {where}"
        )
    overrides = parse_overrides(_get(config, "set", str).split())
    return TrainingData.of(
        config=_get(config, "config", str),
        data_dir=data_dir,
        export=export,
        images=_optional(_get(config, "images", str, where)),
        overrides=overrides,
        storage_options=parse_pairs(_get(config, "storage-options", str), "storage-options"),
        cache_dir=_optional(_get(config, "cache-dir", str, where)),
    )


def _clients_per_round(value: int | float, num_nodes: int) -> int:
    """A count (an int, or a number of at least 1), or a fraction of ``num_nodes`` (below 1; at least 1)."""
    if value >= 1:
        if value != int(value):
            raise ValueError(f"clients-per-round = {value!r}: a count is a whole number (a fraction is below 1)")
        count = int(value)
    elif value > 0:
        count = max(1, int(value * num_nodes))
    else:
        raise ValueError(f"clients-per-round = {value!r}: give a count (1, 2, ...) or a fraction in (0, 1)")
    if count > num_nodes:
        raise ValueError(f"clients-per-round = {value!r}: more than num-nodes = {num_nodes}")
    return count


def _settings(config: Mapping[str, Any], num_nodes: int) -> FedAvgSettings:
    steps = _get(config, "max-local-steps", int)
    local = LocalSettings(
        epochs=_get(config, "local-epochs", int),
        batch_size=_get(config, "batch-size", int),
        lr=_get(config, "lr", float),
        optimizer=_get(config, "optimizer", str),
        weight_decay=_get(config, "weight-decay", float),
        max_steps=steps if steps > 0 else None,
        workers=_get(config, "workers", int),
    )
    return FedAvgSettings(
        rounds=_get(config, "rounds", int),
        clients_per_round=_clients_per_round(_get(config, "clients-per-round", (int, float)), num_nodes),
        local=local,
        server_lr=_get(config, "server-lr", float),
        server_momentum=_get(config, "server-momentum", float),
        eval_batch_size=_get(config, "eval-batch-size", int),
        seed=_get(config, "seed", int),
    )


@dataclass(frozen=True)
class AppConfig:
    """The Flower App's run config, read and checked (see the module docstring)."""

    source: TrainingData
    model: ModelSpec
    settings: FedAvgSettings
    strategy: str
    num_nodes: int
    val_limit: int | None = None
    out: str | None = None
    node_wait_seconds: float = 600.0
    num_proc: int | None = None
    proximal_mu: float = 0.01
    tau: float = 1e-3

    @classmethod
    def from_run_config(cls, config: Mapping[str, Any]) -> AppConfig:
        """Read the run config; every key of ``flower_app/pyproject.toml`` must be there.

        Raises
        ------
        ValueError
            A missing key, a value of the wrong type or out of range, a secret in ``storage-options``, or a
            ``strategy`` that does not fit the server settings; the message names the key and where to set it.
        """
        num_nodes = _get(config, "num-nodes", int)
        if num_nodes < 1:
            raise ValueError(f"num-nodes = {num_nodes}: the server needs at least one SuperNode")
        strategy = _get(config, "strategy", str)
        settings = _settings(config, num_nodes)
        if strategy not in STRATEGIES:
            raise ValueError(f"strategy = {strategy!r}: choose from {', '.join(STRATEGIES)}")
        if strategy in ("fedavg", "fedprox") and (settings.server_momentum or settings.server_lr != 1.0):
            raise ValueError(
                f"strategy = {strategy!r} with server-momentum = {settings.server_momentum} and server-lr = "
                f"{settings.server_lr}: {STRATEGY_NAMES[strategy]} has neither; set strategy = 'fedavgm' (or "
                "momentum 0 and lr 1)"
            )
        mu, tau = _get(config, "proximal-mu", float), _get(config, "tau", float)
        if strategy == "fedprox" and not mu > 0:
            raise ValueError(f"proximal-mu = {mu!r} with strategy = 'fedprox': give FedProx's mu > 0 (e.g. 0.01)")
        if not tau > 0:
            raise ValueError(f"tau = {tau!r}: FedAdam's and FedYogi's adaptivity must be positive (e.g. 1e-3)")
        val_limit, num_proc = _get(config, "val-limit", int), _get(config, "num-proc", int)
        return cls(
            source=run_source(config),
            model=model_spec(_get(config, "model", str), _get(config, "new-head", bool)),
            settings=settings,
            strategy=strategy,
            num_nodes=num_nodes,
            val_limit=val_limit if val_limit > 0 else None,
            out=_optional(_get(config, "out", str)),
            node_wait_seconds=_get(config, "node-wait-seconds", float),
            num_proc=num_proc if num_proc > 0 else None,
            proximal_mu=mu,
            tau=tau,
        )

    def meta(self, device: str) -> dict[str, Any]:
        """The run's settings as ``metrics.json`` records them (the same keys in simulation and deployment)."""
        spec = self.model
        return {
            "mode": "flower " + STRATEGY_NAMES[self.strategy],
            "config": self.source.config,
            "overrides": dict(self.source.overrides),
            "model": f"{spec.size} random ViT" if spec.checkpoint is None else spec.checkpoint,
            "device": device,
            "val_limit": self.val_limit,
            "num_supernodes": self.num_nodes,
            "settings": dataclasses.asdict(self.settings),
        }


def node_source(run_config: Mapping[str, Any], node_config: Mapping[str, Any]) -> TrainingData:
    """The data a node reads: the run config's, or the node's own copy when its node config names one.

    A node config with ``data-dir`` or ``export`` replaces the run config's data location (with its own
    ``images`` and ``cache-dir``, absent = none); the config name, ``set`` and ``storage-options`` stay the
    run's.
    """
    if not any(node_config.get(key) for key in ("data-dir", "export")):
        return run_source(run_config)
    own = {key: str(node_config.get(key, "")) for key in NODE_DATA_KEYS}
    return run_source({**run_config, **own}, where="the SuperNode's --node-config")


def node_partition(node_config: Mapping[str, Any]) -> tuple[int, int | None]:
    """The node's ``partition-id`` and ``num-partitions`` (None when not given).

    Raises
    ------
    ValueError
        If ``partition-id`` is missing or either is not an integer.
    """
    where = "flower-supernode --node-config 'partition-id=0 num-partitions=N'"
    pid = _get(node_config, "partition-id", int, where)
    count = _get(node_config, "num-partitions", int, where) if "num-partitions" in node_config else None
    return pid, count
