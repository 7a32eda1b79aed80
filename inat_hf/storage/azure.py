"""Azure Blob Storage client limits: the ONLY place that sets the Azure SDK's retries and socket timeouts.

How long a dead endpoint can take to fail
    Azure (``az://``, ``abfs://``) clients get bounded socket timeouts (:data:`AZURE_CONNECTION_TIMEOUT`,
    :data:`AZURE_READ_TIMEOUT`) and the SDK's own retries of lost connections and timeouts are off
    (:data:`AZURE_SDK_RETRY`): :mod:`inat_hf.storage.retry` retries them, at most ``DEFAULT_RETRIES`` times,
    and starts no retry (and, in ``fetch_many``, no new request) after ``RETRY_DEADLINE`` seconds without
    an answer. With the defaults, measured on loopback (a closed port, a full accept queue, a silent
    listener): a refused connection fails in about 1.5 s (``fetch_many`` of 256 files: 5 s), a host that
    drops the connection requests in 33 s, an endpoint that accepts connections but never answers in 40 s
    (two 20 s read timeouts), also for ``fetch_many`` of 256 files. The SDK's defaults (3 retries after
    15-42 s waits, 60 s read timeouts) made that 5.6 minutes for a refused connection and about 22 minutes
    for a silent endpoint (4 attempts of 5.5 minutes). ``tests/test_faults.py`` checks these bounds with
    shorter settings.
    Override per call in ``storage_options``: ``connection_timeout`` and ``read_timeout`` (seconds, also
    understood by adlfs) and the SDK's retry keywords ``retry_total``, ``retry_connect``, ``retry_read``,
    ``retry_status``, ``initial_backoff``, ``increment_base``, ``random_jitter_range``.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

logger = logging.getLogger("inat_hf.storage")

AZURE_CONNECTION_TIMEOUT = 10.0
"""Seconds an Azure client waits to open a connection (azure-storage-blob's default: 20)."""
AZURE_READ_TIMEOUT = 20.0
"""Seconds an Azure client waits between two reads of a response (azure-storage-blob's default: 60)."""
AZURE_SDK_RETRY: Mapping[str, float] = MappingProxyType(
    {"retry_total": 2, "retry_connect": 0, "retry_read": 0, "retry_status": 2,
     "initial_backoff": 1, "increment_base": 2, "random_jitter_range": 0.5}
)  # fmt: skip
"""The Azure SDK's own retry policy (``azure.storage.blob.ExponentialRetry`` keywords): lost connections and
timeouts are not retried there but here (bounded, counted, logged); a 408/429/5xx answer is retried at most
twice after 1 and 3 s (also inside streamed writes, which this module cannot retry). The SDK's default, 3
retries after 15, 18 and 24 s of any error, made a refused connection take 85 s per attempt."""
AZURE_PROTOCOLS = frozenset({"az", "abfs", "abfss"})
AZURE_HINT = (
    "give credentials in storage_options (connection_string; or account_name with account_key, sas_token "
    "or credential) or in the environment (AZURE_STORAGE_CONNECTION_STRING; or AZURE_STORAGE_ACCOUNT_NAME "
    "with AZURE_STORAGE_ACCOUNT_KEY or AZURE_STORAGE_SAS_TOKEN; or AZURE_STORAGE_ACCOUNT_NAME alone to use "
    "DefaultAzureCredential, e.g. after `az login`)"
)
AzureSettings = tuple[tuple[str, float], ...]
"""Client settings of one Location, sorted by name (hashable)."""


def azure_settings(options: dict[str, Any], shown: str) -> AzureSettings:
    """Take the Azure client settings out of ``options`` (the timeouts stay: adlfs reads them too).

    Defaults are :data:`AZURE_SDK_RETRY`, :data:`AZURE_CONNECTION_TIMEOUT` and :data:`AZURE_READ_TIMEOUT`.
    """
    settings: dict[str, float] = {
        **AZURE_SDK_RETRY,
        **{key: options.pop(key) for key in AZURE_SDK_RETRY if key in options},
        "connection_timeout": options.setdefault("connection_timeout", AZURE_CONNECTION_TIMEOUT),
        "read_timeout": options.setdefault("read_timeout", AZURE_READ_TIMEOUT),
    }
    for key, value in settings.items():
        if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
            raise ValueError(f"{shown}: storage option {key}={value!r} must be a number >= 0")
    return tuple(sorted(settings.items()))


def bound_azure_client(client: Any, settings: AzureSettings) -> None:
    """Give an azure-storage-blob client (and every client made from it: they share its policy and transport)
    the retry policy and socket timeouts of ``settings``; warn if this SDK version does not let us.

    The one private use of the Azure SDK: adlfs makes the client itself and passes it no retry policy,
    and azure-storage-blob (with azure-core) offers no public way to change a client's policy or
    transport after creation, so they are set on the client's ``_config`` here.
    ``tests/test_storage.py::test_azure_client_limits_reach_the_sdk`` fails if the SDK moves them.
    """
    if client is None:
        return
    config = getattr(client, "_config", None)
    policy, transport = getattr(config, "retry_policy", None), getattr(config, "transport", None)
    connection = getattr(transport, "connection_config", None)
    names = {"retry_total": "total_retries", "retry_connect": "connect_retries", "retry_read": "read_retries",
             "retry_status": "status_retries"}  # fmt: skip
    wanted = dict(settings)
    if connection is None or not all(hasattr(policy, names.get(key, key)) for key in AZURE_SDK_RETRY):
        logger.warning(
            "cannot bound the Azure SDK's retries and timeouts (azure-storage-blob changed): a dead endpoint "
            "may take minutes to fail"
        )
        return
    for key in AZURE_SDK_RETRY:
        setattr(policy, names.get(key, key), wanted[key])
    connection.timeout, connection.read_timeout = wanted["connection_timeout"], wanted["read_timeout"]
