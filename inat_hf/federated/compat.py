"""Where ``datasets`` 4.x and 5.x differ in what this package relies on: the one place that says so.

Both lines are supported and tested (``scripts/test.sh``): ``pip install inaturalist-fl`` gets ``datasets`` 5;
a Flower user gets 4.8 (``flwr-datasets`` 0.6.1 requires ``datasets>=4,<5``). No other module looks at the
``datasets`` version: code that needs one of these behaviours uses the names below.

The differences, each checked on both lines by ``tests/test_datasets_compat.py``:

1. **Batches by column** (:data:`BATCH_BY_COLUMN`). ``Dataset.batch(by_column=...)`` and
   ``IterableDataset.batch(by_column=...)`` exist on 5.x only (4.8 raises ``TypeError``). On 5.x,
   ``batch(by_column="client_id")`` of an export or of ``inat-fl prepare``'s output yields one batch per
   client (``tests/test_client_batches.py``); on 4.x use ``ClientData.client``.
2. **Decoding the output of** ``IterableDataset.map`` (:func:`decode_mapped`). ``map`` does not decode
   the media it returns on either line. On 5.x ``.decode(True)`` decodes them (it adds a decoding step,
   in threads); on 4.8, ``.decode(True)`` without ``num_threads`` only sets the features' ``decode`` flag,
   which leaves ``map``'s output as ``{"bytes", "path"}`` dicts. ``decode(True, num_threads=N)`` with
   ``N > 0`` adds the decoding step on both.

Everything else the package uses behaves the same on both lines (the tests of the builder, ``ClientData``,
the export, ``inat-fl prepare``'s output and the Flower partitioner run on both): ``GeneratorBasedBuilder``,
``load_dataset`` of a Parquet folder (normal and streaming), ``Image`` and ``ClassLabel`` features, and the
private ``Dataset`` state that :func:`inat_hf.federated.dataset_state.contiguous_slice` sets.
"""

from __future__ import annotations

import inspect

import datasets

LINE: int = int(datasets.__version__.split(".", 1)[0])
"""The installed ``datasets`` line (its major version): 4 or 5."""

BATCH_BY_COLUMN: bool = all(
    "by_column" in inspect.signature(cls.batch).parameters for cls in (datasets.Dataset, datasets.IterableDataset)
)
"""Whether ``Dataset.batch`` and ``IterableDataset.batch`` take ``by_column`` (``datasets`` 5.x)."""

DECODE_THREADS = 8
"""Threads of :func:`decode_mapped` (each holds at most two examples in flight)."""


def batch_by_column_missing() -> str | None:
    """Why ``batch(by_column=...)`` is not available here, with the fix; ``None`` when it is.

    Returns
    -------
    str or None
        A sentence naming the installed version and what to do instead.
    """
    if BATCH_BY_COLUMN:
        return None
    return (
        f"Dataset.batch(by_column=...) needs datasets 5 (installed: {datasets.__version__}); "
        "upgrade with pip install 'datasets>=5.2,<6', or take each client with ClientData.client"
    )


def decode_mapped(dataset: datasets.IterableDataset) -> datasets.IterableDataset:
    """``dataset`` with its media features decoded, including those that ``map`` returned, on both lines.

    Parameters
    ----------
    dataset : datasets.IterableDataset
        A dataset whose features are known (``map(..., features=...)``).

    Returns
    -------
    datasets.IterableDataset
        The same rows, ``Image`` columns as PIL images.
    """
    return dataset.decode(True, num_threads=DECODE_THREADS)
