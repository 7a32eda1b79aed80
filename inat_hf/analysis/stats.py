"""Statistics of a partition: client counts, examples per split, drops, client sizes and label skew.

``compute_stats(manifest)`` summarises a :class:`~inat_hf.manifest.Manifest` as a :class:`PartitionStats`;
``format_stats`` prints it as an aligned text table.

Definitions (all over the manifest's ``train`` rows):

* a *train client* is a client with at least one ``train`` example (held-out clients have none);
* *client size* is a train client's number of ``train`` examples;
* *classes per client* is the number of distinct labels among a train client's ``train`` examples;
* *label skew* is the total-variation distance ``TV_c = 0.5 * sum_l |p_cl - q_l|`` between a train client's
  label distribution ``p_c`` and the global train label distribution ``q``, averaged over train clients
  unweighted (each client counts once) and weighted by client size. 0 means every client looks like the
  whole; 1 means clients share no label with the rest.

The label skew is computed sparsely: counts per (client, label) pair present, keyed
``client * num_labels + label``, so that memory grows with the number of rows, never with
clients x labels (158,873 clients x 10,000 species would be 1.6e9 cells).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from numpy.typing import NDArray

from inat_hf.manifest import Manifest
from inat_hf.schema import SPLITS


@dataclass(frozen=True)
class Distribution:
    """Summary of a set of per-client numbers (NaN when there are no clients)."""

    min: float
    p10: float
    median: float
    p90: float
    max: float
    mean: float

    @classmethod
    def of(cls, values: NDArray) -> Distribution:
        """Summarise ``values`` (quantiles by linear interpolation, as ``numpy.percentile``)."""
        if values.size == 0:
            return cls(*([math.nan] * 6))
        low, p10, median, p90, high = np.percentile(values, [0, 10, 50, 90, 100]).tolist()
        return cls(low, p10, median, p90, high, float(np.mean(values)))


@dataclass(frozen=True)
class PartitionStats:
    """Statistics of one manifest; see the module docstring for the definitions.

    Attributes
    ----------
    config_name : str
        Name of the config (as given to :func:`compute_stats`; may be empty).
    fingerprint : str
        The manifest's fingerprint.
    num_labels : int
        Size of the label vocabulary at the config's rank.
    labels_in_train : int
        Distinct labels among the ``train`` examples.
    num_clients : int
        Clients, held-out ones included.
    heldout_clients : int
        Clients held out whole (all their rows are ``test`` rows).
    train_clients : int
        Clients with at least one ``train`` example.
    examples : dict of str to int
        Examples per split (``train``, ``test``, ``validation``).
    dropped : dict of str to int
        Dropped rows per reason, sorted by reason.
    client_size : Distribution
        ``train`` examples per train client.
    classes_per_client : Distribution
        Distinct labels per train client.
    label_skew_tv : float
        Mean total-variation distance to the global train label distribution, each client counted once.
    label_skew_tv_weighted : float
        The same, weighted by client size.
    """

    config_name: str
    fingerprint: str
    num_labels: int
    labels_in_train: int
    num_clients: int
    heldout_clients: int
    train_clients: int
    examples: Mapping[str, int]
    dropped: Mapping[str, int]
    client_size: Distribution
    classes_per_client: Distribution
    label_skew_tv: float
    label_skew_tv_weighted: float

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (NaN becomes ``None``)."""
        return _json_ready(dataclasses.asdict(self))


def _json_ready(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(k): _json_ready(v) for k, v in value.items()}
    if isinstance(value, float) and math.isnan(value):
        return None
    return value


def label_skew(
    clients: NDArray[np.integer], labels: NDArray[np.integer], num_clients: int, num_labels: int
) -> tuple[NDArray[np.float64], NDArray[np.int64], NDArray[np.int64]]:
    """Per-client total-variation distance to the global label distribution, classes and sizes.

    Parameters
    ----------
    clients : int array, shape (n,)
        Client id of each row, in ``[0, num_clients)``.
    labels : int array, shape (n,)
        Label id of each row, in ``[0, num_labels)``.
    num_clients, num_labels : int
        Number of clients and size of the label vocabulary.

    Returns
    -------
    tv : float64 array, shape (num_clients,)
        ``0.5 * sum_l |p_cl - q_l|`` per client; NaN for a client with no rows.
    classes : int64 array, shape (num_clients,)
        Distinct labels per client.
    sizes : int64 array, shape (num_clients,)
        Rows per client.

    Notes
    -----
    Sparse: with ``S`` the set of labels present in client ``c``,
    ``TV_c = 0.5 * (sum_{l in S} |p_cl - q_l| + 1 - sum_{l in S} q_l)``, because ``p_cl = 0`` off ``S``.
    Memory is O(n + num_clients + num_labels).
    """
    clients = np.asarray(clients, dtype=np.int64)
    labels = np.asarray(labels, dtype=np.int64)
    if clients.shape != labels.shape:
        raise ValueError(f"clients and labels differ in shape: {clients.shape} vs {labels.shape}")
    if clients.size and (clients.min() < 0 or clients.max() >= num_clients):
        raise ValueError(f"client ids must lie in [0, {num_clients}); got {clients.min()}..{clients.max()}")
    if labels.size and (labels.min() < 0 or labels.max() >= num_labels):
        raise ValueError(f"labels must lie in [0, {num_labels}); got {labels.min()}..{labels.max()}")
    keys, pair_counts = np.unique(clients * num_labels + labels, return_counts=True)  # sorted pairs
    pair_client, pair_label = np.divmod(keys, num_labels)
    sizes = np.bincount(clients, minlength=num_clients).astype(np.int64)
    classes = np.bincount(pair_client, minlength=num_clients).astype(np.int64)
    q = np.bincount(labels, minlength=num_labels) / max(labels.size, 1)
    p = pair_counts / sizes[pair_client]
    q_pair = q[pair_label]
    abs_sum = np.bincount(pair_client, weights=np.abs(p - q_pair), minlength=num_clients)
    q_sum = np.bincount(pair_client, weights=q_pair, minlength=num_clients)
    tv: NDArray[np.float64] = np.where(sizes > 0, np.clip(0.5 * (abs_sum + 1.0 - q_sum), 0.0, 1.0), np.nan)
    return tv, classes, sizes


def train_rows(manifest: Manifest) -> tuple[NDArray[np.int64], NDArray[np.int64]]:
    """Client id and label of each ``train`` row of the manifest."""
    table = manifest.table.select(["split", "client_id", "label"])
    train = table.filter(pc.equal(table["split"], "train"))
    return train["client_id"].to_numpy().astype(np.int64), train["label"].to_numpy().astype(np.int64)


def compute_stats(manifest: Manifest, config_name: str = "") -> PartitionStats:
    """Statistics of a manifest (see the module docstring); vectorised, no loop over rows or clients.

    Parameters
    ----------
    manifest : Manifest
    config_name : str, optional
        Name to record (the manifest does not carry its config's name).
    """
    clients, labels = train_rows(manifest)
    num_clients = manifest.num_clients
    num_labels = max(len(manifest.label_names), int(labels.max()) + 1 if labels.size else 0, 1)
    tv, classes, sizes = label_skew(clients, labels, num_clients, num_labels)
    active = sizes > 0
    weights = sizes[active]
    split_counts = _value_counts(manifest.table["split"])
    return PartitionStats(
        config_name=config_name,
        fingerprint=manifest.fingerprint,
        num_labels=len(manifest.label_names),
        labels_in_train=int(np.count_nonzero(np.bincount(labels, minlength=num_labels))),
        num_clients=num_clients,
        heldout_clients=int(pc.sum(manifest.clients["heldout"].cast(pa.int64())).as_py() or 0),
        train_clients=int(active.sum()),
        examples={split: split_counts.get(split, 0) for split in SPLITS},
        dropped=dict(sorted(_value_counts(manifest.dropped["reason"]).items())),
        client_size=Distribution.of(weights),
        classes_per_client=Distribution.of(classes[active]),
        label_skew_tv=float(tv[active].mean()) if weights.size else math.nan,
        label_skew_tv_weighted=float(np.average(tv[active], weights=weights)) if weights.size else math.nan,
    )


def _value_counts(column: pa.ChunkedArray) -> dict[str, int]:
    counts = pc.value_counts(column.combine_chunks()).to_pylist()
    return {str(item["values"]): int(item["counts"]) for item in counts}


def _number(value: float, digits: int = 1) -> str:
    if math.isnan(value):
        return "-"
    if float(value).is_integer():
        return f"{int(value):,}"
    return f"{value:,.{digits}f}"


def format_stats(stats: PartitionStats) -> str:
    """The statistics as an aligned, two-column text table."""
    size, classes = stats.client_size, stats.classes_per_client
    sizes = " / ".join(_number(v) for v in (size.min, size.p10, size.median, size.p90, size.max))
    class_counts = " / ".join(_number(v) for v in (classes.min, classes.median, classes.mean, classes.max))
    clients = f"{stats.num_clients:,} ({stats.heldout_clients:,} held out, {stats.train_clients:,} with train rows)"
    rows: list[tuple[str, str]] = [
        ("config", f"{stats.config_name or '-'} (manifest {stats.fingerprint or '-'})"),
        ("labels", f"{stats.num_labels:,} in the vocabulary, {stats.labels_in_train:,} in train"),
        ("clients", clients),
        *((f"{split} examples", f"{stats.examples[split]:,}") for split in SPLITS),
        ("dropped rows", f"{sum(stats.dropped.values()):,}"),
        *((f"  {reason}", f"{count:,}") for reason, count in stats.dropped.items()),
        ("client size: min / p10 / median / p90 / max", sizes),
        ("client size: mean", _number(size.mean)),
        ("classes per client: min / median / mean / max", class_counts),
        ("label skew (TV to global): mean over clients", _number(stats.label_skew_tv, 3)),
        ("label skew (TV to global): weighted by size", _number(stats.label_skew_tv_weighted, 3)),
    ]
    width = max(len(key) for key, _ in rows)
    return "\n".join(f"{key.ljust(width)}  {value}" for key, value in rows)
