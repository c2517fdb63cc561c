"""The dict form of the settings dataclasses kidneyct stores as JSON (in checkpoints, run folders and ONNX
metadata): `to_dict`, and a `from_dict` that reads what another kidneyct version wrote."""

from __future__ import annotations

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
        return cls(**{k: v for k, v in values.items() if k in known})
