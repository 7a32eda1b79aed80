"""``--set FIELD=VALUE``: config fields from text, for every command that takes them.

:func:`parse_overrides` is the one parser of ``--set`` (``inat-fl prepare``, ``export``, ``stats``, ``card``,
``demo`` and the training scripts). Each value is converted to its field's declared type (an integer, a number,
``true``/``false``, ``none`` for an optional field, one of a fixed set of words) and checked as the config
checks it, so that a bad key or value fails at once, before any work, with a message that names the field and
what it allows.
"""

from __future__ import annotations

import dataclasses
import difflib
import functools
import math
import types
import typing
from collections.abc import Callable, Sequence
from typing import Any

import datasets

from inat_hf.config import INatFLConfig

_NONE = ("none", "null")
_TRUE = ("true", "yes", "on", "1")
_FALSE = ("false", "no", "off", "0")


@dataclasses.dataclass(frozen=True)
class FieldType:
    """How the text of one config field becomes its value.

    Attributes
    ----------
    convert : callable
        Text to value; raises ``ValueError`` when the text is not of the type.
    allowed : str
        What the field takes, for people (``"an integer"``, ``"none or an integer"``, ``"one of error, skip"``).
    """

    convert: Callable[[str], Any]
    allowed: str


def _integer(text: str) -> int:
    return int(text.strip())


def _number(text: str) -> float:
    value = float(text.strip())
    if not math.isfinite(value):
        raise ValueError(text)
    return value


def _boolean(text: str) -> bool:
    lowered = text.strip().lower()
    if lowered not in _TRUE + _FALSE:
        raise ValueError(text)
    return lowered in _TRUE


_SIMPLE = {
    int: FieldType(_integer, "an integer"),
    float: FieldType(_number, "a number"),
    bool: FieldType(_boolean, "true or false"),
    str: FieldType(str.strip, "a word"),
}


def _field_type(hint: Any) -> FieldType:
    """The :class:`FieldType` of a resolved type hint: a simple type, ``X | None`` or ``Literal[...]``."""
    if hint in _SIMPLE:
        return _SIMPLE[hint]
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin is typing.Literal:
        words = tuple(str(a) for a in args)

        def choice(text: str) -> str:
            if text.strip() not in words:
                raise ValueError(text)
            return text.strip()

        return FieldType(choice, "one of " + ", ".join(words))
    if origin in (typing.Union, types.UnionType) and type(None) in args:
        inner = _field_type(next(a for a in args if a is not type(None)))

        def optional(text: str) -> Any:
            return None if text.strip().lower() in _NONE else inner.convert(text)

        return FieldType(optional, f"none or {inner.allowed}")
    raise TypeError(f"config fields of type {hint!r} cannot be set from text")


@functools.cache
def field_types() -> dict[str, FieldType]:
    """Every field of :class:`~inat_hf.config.INatFLConfig` that ``--set`` takes (its own fields, not those of
    ``datasets.BuilderConfig``), with its :class:`FieldType`, in declaration order.
    """
    inherited = {f.name for f in dataclasses.fields(datasets.BuilderConfig)}
    hints = typing.get_type_hints(INatFLConfig)
    return {f.name: _field_type(hints[f.name]) for f in dataclasses.fields(INatFLConfig) if f.name not in inherited}


def parse_override(pair: str) -> tuple[str, Any]:
    """One ``FIELD=VALUE``: the field name and its value, converted to the field's type and checked.

    Raises
    ------
    ValueError
        Not ``FIELD=VALUE``, an unknown field (with the closest name), a value not of the field's type, or out
        of the field's range; the message starts with ``--set`` and the pair, names the field and what it allows.
    """
    key, sep, text = pair.partition("=")
    key = key.strip()
    if not sep or not key:
        raise ValueError(f"--set {pair!r}: expected FIELD=VALUE, e.g. --set min_client_size=32")
    types_ = field_types()
    if key not in types_:
        close = difflib.get_close_matches(key, list(types_), n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise ValueError(f"--set {pair!r}: unknown config field {key!r}{hint}; the fields are {', '.join(types_)}")
    kind = types_[key]
    try:
        value = kind.convert(text)
    except ValueError:
        raise ValueError(f"--set {pair!r}: config field {key} takes {kind.allowed}; got {text!r}") from None
    try:
        INatFLConfig(**{key: value})  # the config's own checks (ranges, names), this field alone
    except ValueError as err:
        raise ValueError(f"--set {pair!r}: {err}") from None
    return key, value


def parse_overrides(pairs: Sequence[str]) -> dict[str, Any]:
    """Config overrides from ``--set FIELD=VALUE`` pairs (a later pair of the same field wins).

    Raises
    ------
    ValueError
        As :func:`parse_override`, for the first bad pair.
    """
    return dict(parse_override(pair) for pair in pairs)
