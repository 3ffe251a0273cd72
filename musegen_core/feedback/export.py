"""`musegen feedback export OUT/`: the feedback database as a versioned, self-describing dataset folder.

    OUT/manifest.json        what this is (format, version, counts, weighting policy, content hash); see FIELDS
    OUT/ratings.jsonl        one star rating per line, oldest first
    OUT/pairs.jsonl          one pair vote per line, oldest first; votes with choice "skip" are left out
    OUT/pieces/<sha256>.mid  every prime and take the records name, once each, named by the sha256 of its bytes

**Weights: one rater cannot dominate.** Every record carries a `weight`. For a rater with n records of a kind
(ratings and pairs are counted separately), each of them weighs min(1, cap / n): a rater's records add up to at
most `cap` effective records (default `DEFAULT_RATER_CAP` = 50, `--rater-cap`). Ratings without a rater (stored
before raters existed) count as one rater together. Duplicates are resolved before that, in the store: a rater's
latest vote on a pair, or latest rating of a take, replaced the earlier one.

**Deterministic.** The same database gives the same bytes in every file except the manifest's `created` time:
records in id order, JSON with sorted keys and no spaces. `content_sha256` (not covering the manifest) is
sha256 over the lines "<sha256 of file>  <path>\\n" for every other file, paths relative to OUT and sorted bytewise,
i.e. what this prints:  cd OUT && find . -type f ! -name manifest.json -printf '%P\\n' | LC_ALL=C sort |
xargs sha256sum | sha256sum

Raters appear as `rater-<number>` (their row id), never by the name they chose. Read a dataset back with
`musegen_core.feedback.dataset.load_dataset`.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from collections import Counter
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from musegen_core.errors import StoreError
from musegen_core.feedback.store import FeedbackStore, _pieces_of, _utc
from musegen_core.hashing import file_sha256

FORMAT = "musegen-feedback"
FORMAT_VERSION = 1
DEFAULT_RATER_CAP = 50
MANIFEST = "manifest.json"
RATINGS_FILE = "ratings.jsonl"
PAIRS_FILE = "pairs.jsonl"
PIECES_DIR = "pieces"

WEIGHTING = (
    "weight = min(1, cap / n), n = the rater's records of that kind (ratings and pairs counted separately); "
    "ratings without a rater count as one rater; duplicates (a rater's repeated judgement of the same take or "
    "pair) were resolved in the store before: the latest replaced the earlier"
)
FIELDS = {
    RATINGS_FILE: {
        "id": "the rating's id in the database",
        "created": "when it was given (UTC, ISO 8601)",
        "rater": "rater-<id>, or null for ratings stored without a rater",
        "weight": "the per-rater-cap weight in (0, 1]",
        "stars": "1-5",
        "comment": "the rater's comment, may be empty",
        "tags": "tags from the fixed vocabulary (musegen_core.feedback.TAGS)",
        "model_name": "the model that made the take",
        "model_version": "its version",
        "seed": "sampling seed",
        "controls": "every control value the take was made with",
        "style": "the style asked for, or null for any style",
        "prime": "sha256 of the prime (pieces/<sha256>.mid)",
        "prime_name": "the uploaded file's name",
        "take": "sha256 of the take (pieces/<sha256>.mid): the continuation alone, without the prime",
    },
    PAIRS_FILE: {
        "id": "the vote's id in the database",
        "created": "when it was given (UTC, ISO 8601; a replaced vote: when it was replaced)",
        "rater": "rater-<id>",
        "weight": "the per-rater-cap weight in (0, 1]",
        "choice": "a, b or tie (skips are not exported)",
        "tags": "tags from the fixed vocabulary",
        "prime": "sha256 of the prime both takes continue",
        "prime_name": "the uploaded file's name",
        "a": "take A: {piece: sha256, model_name, model_version, seed, controls}",
        "b": "take B, the same fields",
    },
}


def export_dataset(
    store: FeedbackStore, out: Path, *, rater_cap: int = DEFAULT_RATER_CAP, force: bool = False
) -> dict[str, Any]:
    """Write the dataset folder `out` (atomically: built beside it, then renamed into place); returns the manifest.

    An existing `out` must be empty, or hold an earlier export and `force` be given; anything else is refused.
    """
    if rater_cap < 1:
        raise StoreError(f"The rater cap must be at least 1 (received {rater_cap}).")
    out = Path(out)
    _check_target(out, force)
    rating_rows, rating_tags, vote_rows, vote_tags = store._export_rows()
    kept_votes = [row for row in vote_rows if row.choice != "skip"]

    rating_weights = _weights([row.rater_id for row in rating_rows], rater_cap)
    vote_weights = _weights([row.rater_id for row in kept_votes], rater_cap)
    rating_records = [
        _rating_record(row, rating_tags.get(row.id, ()), w) for row, w in zip(rating_rows, rating_weights, strict=True)
    ]
    pair_records = [
        _pair_record(row, vote_tags.get(row.id, ()), w) for row, w in zip(kept_votes, vote_weights, strict=True)
    ]
    digests = {r["prime"] for r in rating_records} | {r["take"] for r in rating_records}
    digests |= {d for r in pair_records for d in (r["prime"], r["a"]["piece"], r["b"]["piece"])}

    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        (staging / PIECES_DIR).mkdir()
        with store._read() as conn:
            for start in range(0, len(digests), 500):
                for digest, data in _pieces_of(conn, set(sorted(digests)[start : start + 500])).items():
                    if hashlib.sha256(data).hexdigest() != digest:
                        raise StoreError(f"Piece {digest} in the database does not match its hash.")
                    (staging / PIECES_DIR / f"{digest}.mid").write_bytes(data)
        _write_jsonl(staging / RATINGS_FILE, rating_records)
        _write_jsonl(staging / PAIRS_FILE, pair_records)
        raters = {r["rater"] for r in rating_records + pair_records if r["rater"] is not None}
        manifest = {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "created": _iso(datetime.now(UTC)),
            "schema_revision": store.schema_revision(),
            "counts": {
                "ratings": len(rating_records),
                "pairs": len(pair_records),
                "pieces": len(digests),
                "raters": len(raters),
                "unattributed_ratings": sum(r["rater"] is None for r in rating_records),
                "skipped_pairs_excluded": len(vote_rows) - len(kept_votes),
            },
            "weighting": {"policy": "per-rater-cap", "cap": rater_cap, "rule": WEIGHTING},
            "files": {
                RATINGS_FILE: file_sha256(staging / RATINGS_FILE),
                PAIRS_FILE: file_sha256(staging / PAIRS_FILE),
            },
            "fields": FIELDS,
            "content_sha256": content_sha256(staging),
            "content_hash_rule": "sha256 over '<sha256 of file>  <path>\\n' for every file but manifest.json, "
            "paths relative to the folder, sorted bytewise (sha256sum's output format)",
        }
        (staging / MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n", encoding="utf-8")
        os.chmod(staging, 0o755)  # mkdtemp makes it 0700
        if out.exists():
            shutil.rmtree(out) if any(out.iterdir()) else out.rmdir()
        staging.rename(out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return manifest


def content_sha256(folder: Path) -> str:
    """The dataset's content hash: see the module doc."""
    files = (p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())
    paths = sorted((path for path in files if path != MANIFEST), key=str.encode)
    lines = "".join(f"{file_sha256(folder / path)}  {path}\n" for path in paths)
    return hashlib.sha256(lines.encode()).hexdigest()


def _check_target(out: Path, force: bool) -> None:
    if not out.exists():
        return
    if not out.is_dir():
        raise StoreError(f"{out} exists and is not a folder.")
    if not any(out.iterdir()):
        return
    manifest = out / MANIFEST
    is_export = False
    if manifest.is_file():
        try:
            is_export = json.loads(manifest.read_text(encoding="utf-8")).get("format") == FORMAT
        except (ValueError, OSError, AttributeError):
            is_export = False
    if not is_export:
        raise StoreError(f"{out} is not empty and holds no earlier feedback export: choose another folder.")
    if not force:
        raise StoreError(f"{out} holds an earlier feedback export: pass --force to replace it.")


def _weights(rater_ids: Iterable[int | None], cap: int) -> list[float]:
    ids = list(rater_ids)
    per_rater = Counter(ids)  # None (no rater) is one rater
    return [min(1.0, cap / per_rater[rater]) for rater in ids]


def _rater(rater_id: int | None) -> str | None:
    return None if rater_id is None else f"rater-{rater_id}"


def _iso(moment: datetime) -> str:
    return _utc(moment).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _rating_record(row: Any, tags: tuple[str, ...], weight: float) -> dict[str, Any]:
    return {
        "id": row.id,
        "created": _iso(row.created_at),
        "rater": _rater(row.rater_id),
        "weight": weight,
        "stars": row.stars,
        "comment": row.comment,
        "tags": list(tags),
        "model_name": row.model_name,
        "model_version": row.model_version,
        "seed": row.seed,
        "controls": json.loads(row.controls_json),
        "style": row.style,
        "prime": row.prime_sha256,
        "prime_name": row.prime_name,
        "take": row.take_sha256,
    }


def _pair_record(row: Any, tags: tuple[str, ...], weight: float) -> dict[str, Any]:
    def take(side: str) -> dict[str, Any]:
        return {
            "piece": getattr(row, f"{side}_sha256"),
            "model_name": getattr(row, f"{side}_model_name"),
            "model_version": getattr(row, f"{side}_model_version"),
            "seed": getattr(row, f"{side}_seed"),
            "controls": json.loads(getattr(row, f"{side}_controls_json")),
        }

    return {
        "id": row.id,
        "created": _iso(row.created_at),
        "rater": _rater(row.rater_id),
        "weight": weight,
        "choice": row.choice,
        "tags": list(tags),
        "prime": row.prime_sha256,
        "prime_name": row.prime_name,
        "a": take("a"),
        "b": take("b"),
    }


def _write_jsonl(path: Path, records: Iterable[Mapping[str, Any]]) -> None:
    with path.open("w", encoding="utf-8", newline="\n") as handle:
        for record in records:
            handle.write(json.dumps(record, sort_keys=True, ensure_ascii=False, separators=(",", ":")) + "\n")
