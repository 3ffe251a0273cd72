"""Read a feedback dataset written by `musegen feedback export` (format: `musegen_core.feedback.export`).

    from musegen_core.feedback.dataset import load_dataset

    data = load_dataset("feedback-2026-05/")          # checks format, content hash and every piece
    data.content_sha256                               # the dataset's identity (record it as a fine-tune's lineage)
    for r in data.ratings:                            # RatingRecord
        r.stars, r.weight, r.prime_midi, r.take_midi, r.model_name, r.model_version, r.controls
    for p in data.pairs:                              # PairRecord; choice "a" | "b" | "tie" (skips not exported)
        p.prime_midi, p.a.midi, p.b.midi, p.choice, p.weight, p.a.model_name, p.b.model_version
        p.preferred, p.rejected                       # the winning and losing take (None for a tie)

MIDI comes as bytes (`musegen_core.formats.midi.midi_to_piece` turns them into a `Piece`); a take is the
continuation alone, its prime separate. `weight` is the per-rater-cap weight (see the export module): multiply a
record's loss by it. Records of one piece share the same bytes object.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from musegen_core.errors import MusegenError
from musegen_core.feedback.export import (
    FORMAT,
    FORMAT_VERSION,
    MANIFEST,
    PAIRS_FILE,
    PIECES_DIR,
    RATINGS_FILE,
    content_sha256,
)


class DatasetError(MusegenError):
    """A feedback dataset is missing, of another format or version, or does not match its content hash."""


@dataclass(frozen=True)
class DatasetTake:
    """One take of a pair: its MIDI and what made it."""

    midi: bytes
    sha256: str
    model_name: str
    model_version: str
    seed: int
    controls: dict[str, Any]


@dataclass(frozen=True)
class RatingRecord:
    id: int
    stars: int  # 1–5
    weight: float  # (0, 1]
    prime_midi: bytes
    take_midi: bytes  # the continuation alone
    model_name: str
    model_version: str
    seed: int
    controls: dict[str, Any]
    style: str | None
    tags: tuple[str, ...]
    rater: str | None  # "rater-<n>", None for ratings stored without a rater
    comment: str
    prime_sha256: str
    take_sha256: str
    created: datetime
    prime_name: str = ""


@dataclass(frozen=True)
class PairRecord:
    id: int
    choice: str  # "a", "b" or "tie"
    weight: float  # (0, 1]
    prime_midi: bytes
    a: DatasetTake
    b: DatasetTake
    tags: tuple[str, ...]
    rater: str  # "rater-<n>"
    prime_sha256: str
    created: datetime
    prime_name: str = ""

    @property
    def preferred(self) -> DatasetTake | None:
        """The take the rater chose (None for a tie)."""
        return {"a": self.a, "b": self.b}.get(self.choice)

    @property
    def rejected(self) -> DatasetTake | None:
        """The other take (None for a tie)."""
        return {"a": self.b, "b": self.a}.get(self.choice)

    @property
    def models(self) -> tuple[tuple[str, str], tuple[str, str]]:
        """((name, version) of A, (name, version) of B)."""
        return ((self.a.model_name, self.a.model_version), (self.b.model_name, self.b.model_version))


@dataclass(frozen=True)
class FeedbackDataset:
    path: Path
    manifest: dict[str, Any]
    content_sha256: str
    ratings: tuple[RatingRecord, ...]
    pairs: tuple[PairRecord, ...]
    pieces: Mapping[str, bytes] = field(repr=False)  # sha256 → MIDI bytes

    @property
    def format_version(self) -> int:
        return int(self.manifest["format_version"])

    def models(self) -> set[tuple[str, str]]:
        """Every (model name, version) that made a rated or compared take."""
        found = {(r.model_name, r.model_version) for r in self.ratings}
        return found | {m for p in self.pairs for m in p.models}


def load_dataset(path: str | Path, verify: bool = True) -> FeedbackDataset:
    """Read the dataset folder `path`. With `verify` (the default) the content hash is recomputed and every piece's
    bytes checked against its name; any mismatch raises `DatasetError`, as do a missing file, another format, a
    newer format version and a record naming a piece that is not there."""
    folder = Path(path)
    manifest = _json(folder / MANIFEST)
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise DatasetError(f"{folder} is not a MuseGen feedback dataset (no '{FORMAT}' manifest).")
    version = manifest.get("format_version")
    if not isinstance(version, int) or not 1 <= version <= FORMAT_VERSION:
        raise DatasetError(
            f"{folder} is feedback dataset format version {version}; this MuseGen reads versions 1 to {FORMAT_VERSION}."
        )
    expected = manifest.get("content_sha256")
    if verify and content_sha256(folder) != expected:
        raise DatasetError(f"{folder} does not match its manifest's content hash: a file was changed or is missing.")

    pieces: dict[str, bytes] = {}
    for file in sorted((folder / PIECES_DIR).glob("*.mid")):
        data = file.read_bytes()
        if verify and hashlib.sha256(data).hexdigest() != file.stem:
            raise DatasetError(f"{file.name} does not match its name's sha256.")
        pieces[file.stem] = data

    def piece(digest: str) -> bytes:
        try:
            return pieces[digest]
        except KeyError:
            raise DatasetError(f"{folder} has a record naming piece {digest}, which is not in {PIECES_DIR}/.") from None

    def take(raw: Mapping[str, Any]) -> DatasetTake:
        return DatasetTake(
            piece(raw["piece"]), raw["piece"], raw["model_name"], raw["model_version"], raw["seed"], raw["controls"]
        )

    try:
        ratings = tuple(
            RatingRecord(
                id=r["id"], stars=r["stars"], weight=float(r["weight"]), prime_midi=piece(r["prime"]),
                take_midi=piece(r["take"]), model_name=r["model_name"], model_version=r["model_version"],
                seed=r["seed"], controls=r["controls"], style=r["style"], tags=tuple(r["tags"]), rater=r["rater"],
                comment=r["comment"], prime_sha256=r["prime"], take_sha256=r["take"],
                created=datetime.fromisoformat(r["created"]), prime_name=r.get("prime_name", ""),
            )
            for r in _jsonl(folder / RATINGS_FILE)
        )  # fmt: skip
        pairs = tuple(
            PairRecord(
                id=p["id"], choice=p["choice"], weight=float(p["weight"]), prime_midi=piece(p["prime"]),
                a=take(p["a"]), b=take(p["b"]), tags=tuple(p["tags"]), rater=p["rater"], prime_sha256=p["prime"],
                created=datetime.fromisoformat(p["created"]), prime_name=p.get("prime_name", ""),
            )
            for p in _jsonl(folder / PAIRS_FILE)
        )  # fmt: skip
    except (KeyError, TypeError, ValueError) as exc:
        raise DatasetError(f"{folder} has a malformed record ({exc.__class__.__name__}: {exc}).") from exc

    counts = manifest.get("counts", {})
    if (counts.get("ratings"), counts.get("pairs")) != (len(ratings), len(pairs)):
        raise DatasetError(f"{folder}: the manifest's counts do not match the records.")
    return FeedbackDataset(folder, manifest, expected, ratings, pairs, pieces)


def _json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise DatasetError(f"{path} not found: is {path.parent} a feedback dataset folder?") from None
    except (OSError, ValueError) as exc:
        raise DatasetError(f"{path} cannot be read: {exc}.") from exc


def _jsonl(path: Path) -> list[dict[str, Any]]:
    try:
        with path.open(encoding="utf-8") as handle:
            return [json.loads(line) for line in handle if line.strip()]
    except FileNotFoundError:
        raise DatasetError(f"{path} not found.") from None
    except (OSError, ValueError) as exc:
        raise DatasetError(f"{path} cannot be read: {exc}.") from exc
