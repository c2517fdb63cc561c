"""The dict form of the settings dataclasses kidneyct stores as JSON or in checkpoints (run folders, ONNX
metadata, checkpoints): `to_dict`, and a `from_dict` that reads what another kidneyct version wrote and rebuilds
nested records (a field annotated with a DictRecord, an optional one or a list of them) from their dicts."""

from __future__ import annotations

import functools
import types
import typing
from dataclasses import asdict, fields
from typing import Self


class DictRecord:
    """Mixin for dataclasses: `to_dict()` gives their fields as a plain dict; `from_dict(values)` builds one,
    ignoring keys this version does not know (a newer version's additions, an older one's removals)."""

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> Self:
        known = {f.name for f in fields(cls)}
        given = {k: v for k, v in values.items() if k in known}
        nested = [k for k, v in given.items() if isinstance(v, (dict, list))]
        hints = _hints(cls) if nested else {}
        return cls(**{k: _decode(hints.get(k), v) if k in nested else v for k, v in given.items()})


@functools.cache
def _hints(cls: type) -> dict:
    return typing.get_type_hints(cls)


def _record_type(hint) -> type | None:
    return hint if isinstance(hint, type) and issubclass(hint, DictRecord) else None


def _decode(hint, value):
    """`value` as the annotation `hint` wants it: a DictRecord from its dict, a list of them, a tuple."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        chosen = [a for a in args if a is not type(None)]
        return _decode(chosen[0], value) if len(chosen) == 1 else value
    if _record_type(hint) is not None and isinstance(value, dict):
        return hint.from_dict(value)
    if origin is list and args and _record_type(args[0]) is not None:
        return [args[0].from_dict(v) if isinstance(v, dict) else v for v in value]
    if origin is tuple and isinstance(value, list):
        return tuple(value)
    return value
