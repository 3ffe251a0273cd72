"""The JSON round trip every family's config dataclass shares (a checkpoint's `config.json` "model" entry)."""

from __future__ import annotations

from dataclasses import asdict, fields
from typing import Any, ClassVar, Self


class StrictConfig:
    """Mixin for a frozen config dataclass with a `styles: tuple[str, ...]` field.

    `from_dict` refuses unknown or missing fields, so a checkpoint must match the code exactly; only the names in
    `OPTIONAL_FIELDS` may be missing (their defaults rebuild older checkpoints).
    """

    OPTIONAL_FIELDS: ClassVar[frozenset[str]] = frozenset()

    def to_dict(self) -> dict[str, Any]:
        return asdict(self) | {"styles": list(self.styles)}  # type: ignore[call-overload, attr-defined]

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Self:
        names = {f.name for f in fields(cls)}  # type: ignore[arg-type]
        unknown, missing = sorted(set(data) - names), sorted(names - set(data) - cls.OPTIONAL_FIELDS)
        if unknown or missing:
            raise ValueError(f"{cls.__name__} fields do not match: unknown {unknown}, missing {missing}")
        return cls(**{**data, "styles": tuple(data.get("styles", ()))})
