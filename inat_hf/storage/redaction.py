"""Redaction of secrets in text: account keys, SAS signatures, connection strings, tokens.

:func:`redact` is what every message of :mod:`inat_hf.storage` goes through (also importable as
``inat_hf.storage.redact``); :func:`secrets_of` picks the secret values out of ``storage_options``.
"""

from __future__ import annotations

import logging
import re
import urllib.parse
from collections.abc import Iterable, Mapping
from typing import Any

REDACTED = "REDACTED"
SECRET_OPTIONS = frozenset({"account_key", "sas_token", "connection_string", "credential", "client_secret",
                            "key", "secret", "token", "password", "session_token", "aws_secret_access_key",
                            "aws_session_token", "private_key"})  # fmt: skip
"""``storage_options`` keys whose string values are secrets."""
SECRET_QUERY_KEYS = frozenset({"sig", "signature", "x-amz-signature", "x-amz-credential", "x-amz-security-token",
                               "x-goog-signature", "x-goog-credential", "token", "access_token", "code",
                               "key"})  # fmt: skip
"""URL query keys whose values are secrets (a SAS ``sig``, presigned S3 and GCS URLs, tokens)."""
LIBRARY_LOGGERS = ("fsspec", "fsspec.http", "fsspec.caching", "fsspec.asyn", "fsspec.cached", "fsspec.local",
                   "adlfs", "adlfs.spec", "aiohttp.client")  # fmt: skip
"""Loggers of the storage libraries whose records :func:`protect_library_logs` redacts."""
_PATTERNS = tuple(
    (re.compile(pattern, re.IGNORECASE), replacement + REDACTED)
    for pattern, replacement in (
        (r"\b(AccountKey|SharedAccessKey|SharedAccessSignature|AccessKey|Password|Pwd)=[^;\s'\"]+", r"\1="),
        (r"(?<![\w%])(sig=)[^&;\s'\"]+", r"\1"),
        (r"(?<![\w%])((?:X-Amz|X-Goog)-(?:Signature|Credential|Security-Token)=)[^&;\s'\"]+", r"\1"),
        (r"(sig%3D)(?:(?!%26)[^&;\s'\"])+", r"\1"),
        (r"\b(Bearer)\s+[\w\-.~+/]+=*", r"\1 "),
        (r"\b(SharedKey(?:Lite)?)\s+([^:\s]+):[^\s'\",]+", r"\1 \2:"),
    )
)


def redact(text: str, secrets: Iterable[str] = ()) -> str:
    """Return ``text`` with every secret replaced by ``REDACTED``.

    Removes the values of ``secrets`` (also URL-quoted or unquoted), connection-string secrets
    (``AccountKey=``, ``SharedAccessSignature=``...), SAS signatures (``sig=REDACTED``, also
    percent-encoded), the signatures of presigned S3 and GCS URLs, ``Bearer`` tokens and ``SharedKey``
    signatures.
    """
    variants = set()
    for secret in secrets:
        if isinstance(secret, str) and secret:
            variants |= {secret, urllib.parse.unquote(secret), urllib.parse.quote(secret, safe="")}
    for value in sorted(variants - {""}, key=len, reverse=True):
        text = text.replace(value, REDACTED)
    for pattern, replacement in _PATTERNS:
        text = pattern.sub(replacement, text)
    return text


def secrets_of(options: Mapping[str, Any]) -> tuple[str, ...]:
    """Return the secret strings in ``storage_options``, with the secret parts of connection strings."""
    found: list[str] = []
    for key, value in options.items():
        if isinstance(value, Mapping):
            found.extend(secrets_of(value))
        elif isinstance(value, str) and value and key in SECRET_OPTIONS:
            found.append(value)
            for part in re.split(r"[;&?]", value):
                name, _, secret = part.partition("=")
                if secret and name.strip().lower() in {"accountkey", "sharedaccesssignature", "sig"}:
                    found.append(secret)
    return tuple(dict.fromkeys(found))


def describe_error(exc: BaseException) -> str:
    """Return the exception's type and the first line of its message, shortened."""
    lines = str(exc).strip().splitlines()
    text = f"{type(exc).__name__}: {lines[0]}" if lines else type(exc).__name__
    return text if len(text) <= 300 else text[:297] + "..."


def secrets_of_url(url: str) -> tuple[str, ...]:
    """Return the secret values in the query of ``url`` (:data:`SECRET_QUERY_KEYS`: a SAS ``sig``, ...)."""
    query = urllib.parse.urlsplit(url).query if "?" in url else ""
    pairs = urllib.parse.parse_qsl(query, keep_blank_values=False)
    return tuple(dict.fromkeys(value for key, value in pairs if key.lower() in SECRET_QUERY_KEYS and value))


class _RedactingFilter(logging.Filter):
    """Rewrites a log record with its message redacted; an exception's type and first line are added to the
    message, redacted, and the exception object is dropped from the record (its arguments may hold a URL with
    a signature). Its traceback is not formatted: on Python 3.11 that parses source lines (``ast.parse``),
    which is not safe while another ``ast.parse`` is under way (a library logging from its thread, or from a
    finalizer), and raises ``SystemError: AST constructor recursion depth mismatch`` in the other one.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        error = record.exc_info[1] if record.exc_info else None
        if error is not None:
            message = f"{message} ({describe_error(error)})" if message else describe_error(error)
            record.exc_info, record.exc_text = None, None
        clean = redact(message)
        if clean != record.msg or record.args:
            record.msg, record.args = clean, None
        return True


_FILTER = _RedactingFilter("inat_hf.storage.redaction")


def protect_library_logs(names: Iterable[str] = LIBRARY_LOGGERS) -> None:
    """Redact every record of the loggers ``names`` (default :data:`LIBRARY_LOGGERS`); idempotent.

    fsspec's HTTP filesystem logs whole URLs (a SAS URL's ``sig`` with them) at DEBUG; adding this filter to
    the loggers that make the records rewrites them before any handler sees them.
    """
    for name in names:
        logger = logging.getLogger(name)
        if _FILTER not in logger.filters:
            logger.addFilter(_FILTER)
