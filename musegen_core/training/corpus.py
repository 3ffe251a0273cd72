"""Training corpus: style-labelled melodies from music21's bundled collections, as tokens, cached and split.

Collections (`sources.COLLECTIONS`) and their style labels (`STYLES`): Essen (German and Chinese folk songs;
**non-commercial licence**), O'Neill's Music of Ireland (1850, Irish), Ryan's Mammoth Collection (1883, American
fiddle) and the Bach chorales (soprano lines). Each tune is parsed with music21 from its text or bytes (never its
pickle cache) in worker processes, reduced to a one-part `Piece` and encoded with `musegen_core.encoding`. The built
corpus of each collection is cached as one `.npz` (no pickles) under `MUSEGEN_CACHE_DIR` (default
`~/.cache/musegen`), keyed by the corpus files, the style labels, the encoding version and `CORPUS_VERSION`.

Split: 80/10/10 by a hash of the seed and a transposition-invariant content signature, so exact duplicates and
transpositions share a split. Near-duplicates (variants, a tune in two collections) are grouped by
`musegen_core.training.dedupe` and each group takes the split of its smallest signature, so no near-duplicate pair
straddles train/valid/test. Grouping looks at the tunes loaded together: the split of a tune can depend on which
collections (and `max_tunes`) were loaded.
"""

from __future__ import annotations

import argparse
import hashlib
import itertools
import json
import os
import time
import zipfile
from collections import Counter
from dataclasses import asdict, dataclass, field
from multiprocessing import Pool
from pathlib import Path

import numpy as np
from tqdm import tqdm

from musegen_core import encoding
from musegen_core.training import dedupe
from musegen_core.training.corpus_tables import stats_markdown
from musegen_core.training.m21_tune import SkipTune, key_name, stream_to_piece, tempo_of
from musegen_core.training.sources import (
    COLLECTIONS,
    STYLES,
    Source,
    chorale_title,
    collection_files,
    read_score,
    style_of,
    tune_sources,
)

CORPUS_VERSION = 3  # bump when the tune → tokens conversion changes (invalidates caches). 3: Bach, keys per part
MAX_TUNE_STEPS = 4096  # tunes longer than this many sixteenth steps (256 bars of 4/4) are skipped
MIN_TUNE_NOTES = 8  # shorter tunes are skipped (fragments, incipits)
SPLITS = ("train", "valid", "test")
SPLIT_PERCENT = (80, 10, 10)
DEFAULT_COLLECTIONS = ("essen", "oneills", "ryans")  # what `load_corpus` loads when not told (the shipped model's)


@dataclass(frozen=True)
class Tune:
    """One tune as melody tokens. Step `i` of `tokens` lies at bar position `(i + offset_steps) % bar_steps`."""

    collection: str  # key of COLLECTIONS
    style: str  # style label, e.g. "irish"
    tune_id: str  # "<folder>/<file>#<index of the tune in the file>"
    title: str
    meter: str  # e.g. "6/8"
    key: str  # e.g. "G major", "D dorian"; "" when not given
    tempo_bpm: float | None  # quarter notes per minute where the tune gives one
    bar_steps: int  # sixteenth steps per bar
    offset_steps: int  # steps missing from the pickup bar (0 without a pickup)
    signature: str  # hex digest of the transposition-invariant content (see `content_signature`)
    tokens: np.ndarray = field(repr=False)  # int64, shape (steps,)

    def positions(self) -> np.ndarray:
        """Position-in-bar of every step, int64, shape (steps,)."""
        return encoding.bar_positions(len(self.tokens), self.bar_steps, self.offset_steps)


@dataclass(frozen=True)
class Grouping:
    """How near-duplicates were grouped before the split (see `musegen_core.training.dedupe`)."""

    groups: int  # groups of two or more tunes
    grouped_tunes: int  # tunes in those groups
    moved_tunes: int  # tunes whose split differs from the split of their own signature
    threshold: float  # Jaccard similarity of shingle sets at or above which two tunes are joined
    ngram: int  # events per shingle
    seconds: float  # time taken


@dataclass
class Corpus:
    """Tunes of one or more collections plus their split assignment (`splits[i]` is the split of `tunes[i]`)."""

    tunes: list[Tune]
    splits: list[str]
    failures: dict[str, Counter]  # collection → reason → number of tunes skipped
    build_seconds: dict[str, float]  # collection → seconds spent parsing (0.0 when loaded from the cache)
    cached_build_seconds: dict[str, float] = field(default_factory=dict)  # collection → seconds its cached build took
    grouping: Grouping | None = None  # None when near-duplicates were not grouped

    def split(self, name: str) -> list[Tune]:
        """The tunes of one split: "train", "valid" or "test"."""
        if name not in SPLITS:
            raise ValueError(f"split must be one of {SPLITS} (received {name!r})")
        return [tune for tune, split in zip(self.tunes, self.splits, strict=True) if split == name]

    def counts(self) -> dict[str, int]:
        """Number of tunes per split."""
        return {name: self.splits.count(name) for name in SPLITS}

    def summary(self) -> dict:
        """JSON-ready statistics: tunes and steps per style and split (styles in `STYLES` order, then "all"),
        skipped tunes per collection and reason, build seconds and the near-duplicate grouping."""
        cells = {style: {name: Counter() for name in (*SPLITS, "all")} for style in (*STYLES, "all")}
        for tune, split in zip(self.tunes, self.splits, strict=True):
            for style, name in itertools.product((tune.style, "all"), (split, "all")):
                cells[style][name].update({"tunes": 1, "steps": len(tune.tokens)})
        present = [style for style in STYLES if cells[style]["all"]["tunes"]]
        return {
            "styles": {
                style: {name: {"tunes": c["tunes"], "steps": c["steps"]} for name, c in cells[style].items()}
                for style in (*present, "all")
            },
            "skipped": {name: dict(reasons) for name, reasons in self.failures.items()},
            "build_seconds": {name: round(seconds, 2) for name, seconds in self.build_seconds.items()},
            "cached_build_seconds": {name: round(s, 2) for name, s in self.cached_build_seconds.items()},
            "near_duplicates": asdict(self.grouping) if self.grouping else None,
        }

    def stats(self) -> str:
        """Markdown: tunes and sixteenth steps per style and split, then skipped tunes and build time per collection,
        then the near-duplicate grouping."""
        return stats_markdown(self.summary())


# ---------------------------------------------------------------------------------------------------------------
# Loading and caching


def music21_corpus_root() -> Path:
    """music21's bundled corpus folder (found from the installed package)."""
    import music21.corpus

    return Path(music21.corpus.__file__).parent


def default_cache_dir() -> Path:
    """`$MUSEGEN_CACHE_DIR`, else `~/.cache/musegen`."""
    return Path(os.environ.get("MUSEGEN_CACHE_DIR") or Path.home() / ".cache" / "musegen")


def load_corpus(
    collections: tuple[str, ...] | list[str] = DEFAULT_COLLECTIONS,
    *,
    seed: int = 0,
    max_tunes: int | None = None,
    workers: int = 2,
    progress: bool = True,
    cache_dir: Path | str | None = None,
    root: Path | str | None = None,
    group_near_duplicates: bool = True,
) -> Corpus:
    """Load (building and caching where needed) the tunes of the given collections and split them.

    Args:
        collections: keys of `COLLECTIONS`, e.g. `("essen", "oneills", "ryans", "bach")`.
        seed: split seed; the split of a tune depends on the seed and its content (and its near-duplicates').
        max_tunes: per collection, keep only the first this many tunes (in file order) — for quick tests.
        workers: parser processes for a build (1 parses in this process).
        progress: show a tqdm progress bar while building.
        cache_dir: where `.npz` caches live (default `default_cache_dir()`).
        root: corpus folder holding the collection folders (default music21's).
        group_near_duplicates: keep near-duplicate groups in one split (False: exact signatures only, as in v1).
    """
    unknown = [name for name in collections if name not in COLLECTIONS]
    if unknown:
        raise ValueError(f"unknown collection(s) {unknown}; choose from {sorted(COLLECTIONS)}")
    root = Path(root) if root else music21_corpus_root()
    cache = Path(cache_dir) if cache_dir else default_cache_dir()
    tunes: list[Tune] = []
    failures: dict[str, Counter] = {}
    seconds: dict[str, float] = {}
    cached_seconds: dict[str, float] = {}
    for name in collections:
        built, failures[name], seconds[name], cached_seconds[name] = _load_collection(
            name, root, cache, max_tunes, workers, progress
        )
        tunes.extend(built)
    splits, grouping = assign_splits(tunes, seed, group_near_duplicates)
    return Corpus(tunes, splits, failures, seconds, cached_seconds, grouping)


def _load_collection(
    name: str, root: Path, cache: Path, max_tunes: int | None, workers: int, progress: bool
) -> tuple[list[Tune], Counter, float, float]:
    """(tunes, skip reasons, seconds spent building now, seconds the cached build took)."""
    files = collection_files(name, root)
    path = _cache_path(name, files, root, cache, max_tunes)
    if path.exists():
        try:
            tunes, failures, cached_seconds = _read_cache(path)
            return tunes, failures, 0.0, cached_seconds
        except (OSError, ValueError, KeyError, TypeError, zipfile.BadZipFile):  # damaged cache: build it again
            path.unlink(missing_ok=True)
    start = time.perf_counter()
    tunes, failures = _build_collection(name, tune_sources(name, files, root, max_tunes), workers, progress)
    seconds = time.perf_counter() - start
    _write_cache(path, tunes, failures, seconds)
    return tunes, failures, seconds, seconds


def is_cached(
    collections: tuple[str, ...] | list[str] = DEFAULT_COLLECTIONS,
    *,
    max_tunes: int | None = None,
    cache_dir: Path | str | None = None,
    root: Path | str | None = None,
) -> bool:
    """Whether `load_corpus` with these arguments would read every collection from its cache (build nothing)."""
    root = Path(root) if root else music21_corpus_root()
    cache = Path(cache_dir) if cache_dir else default_cache_dir()
    return all(
        _cache_path(name, collection_files(name, root), root, cache, max_tunes).is_file() for name in collections
    )


def _cache_path(name: str, files: list[Path], root: Path, cache: Path, max_tunes: int | None) -> Path:
    return cache / f"corpus-{name}-{_cache_key(name, files, root, max_tunes)}.npz"


def _cache_key(name: str, files: list[Path], root: Path, max_tunes: int | None) -> str:
    """Digest of what a collection's cache depends on: versions, style labels, `max_tunes`, file names and sizes."""
    listing = [(str(f.relative_to(root)), f.stat().st_size) for f in files]
    labels = [COLLECTIONS[name].style, COLLECTIONS[name].alt_style]
    blob = json.dumps([encoding.ENCODING_VERSION, CORPUS_VERSION, labels, max_tunes, listing])
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def _write_cache(path: Path, tunes: list[Tune], failures: Counter, seconds: float) -> None:
    """One `.npz`: all tokens concatenated (uint8), tune start offsets, and a JSON metadata string."""
    lengths = [len(t.tokens) for t in tunes]
    offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    tokens = np.concatenate([t.tokens for t in tunes]).astype(np.uint8) if tunes else np.zeros(0, np.uint8)
    meta = {
        "tunes": [{k: v for k, v in asdict(t).items() if k != "tokens"} for t in tunes],
        "failures": dict(failures),
        "build_seconds": seconds,
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_suffix(f".{os.getpid()}.tmp.npz")
    np.savez_compressed(temporary, tokens=tokens, offsets=offsets, meta=np.array(json.dumps(meta)))
    temporary.replace(path)


def _read_cache(path: Path) -> tuple[list[Tune], Counter, float]:
    with np.load(path, allow_pickle=False) as data:
        tokens, offsets = data["tokens"].astype(np.int64), data["offsets"]
        meta = json.loads(str(data["meta"]))
    tunes = [Tune(**fields, tokens=tokens[offsets[i] : offsets[i + 1]]) for i, fields in enumerate(meta["tunes"])]
    return tunes, Counter(meta["failures"]), float(meta["build_seconds"])


# ---------------------------------------------------------------------------------------------------------------
# Building: parse the tunes of a collection in worker processes


def _build_collection(name: str, sources: list[Source], workers: int, progress: bool) -> tuple[list[Tune], Counter]:
    chunk = COLLECTIONS[name].chunk_tunes
    tasks = [(index, name, sources[start : start + chunk]) for index, start in enumerate(range(0, len(sources), chunk))]
    results: dict[int, list[Tune | str]] = {}
    bar = tqdm(total=len(sources), desc=f"parsing {name}", unit="tune", disable=not progress)
    with Pool(workers) if workers > 1 else _InProcess() as pool:
        for index, outcome in pool.imap_unordered(_parse_task, tasks):
            results[index] = outcome
            bar.update(len(outcome))
    bar.close()
    ordered = [item for index in range(len(tasks)) for item in results[index]]  # file order, whatever finished first
    tunes = [item for item in ordered if isinstance(item, Tune)]
    return tunes, Counter(item for item in ordered if isinstance(item, str))


class _InProcess:
    """Stands in for `multiprocessing.Pool` when `workers == 1` (debuggable, no fork)."""

    def __enter__(self) -> _InProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def imap_unordered(self, function, items):
        return map(function, items)


def _parse_task(task: tuple[int, str, list[Source]]) -> tuple[int, list[Tune | str]]:
    """Parse one chunk of tunes; each result is a `Tune` or the reason (a short string) it was skipped."""
    index, name, sources = task
    outcome: list[Tune | str] = []
    for tune_id, payload in sources:
        try:
            outcome.append(parse_tune(payload, name, tune_id))
        except SkipTune as skip:
            outcome.append(str(skip))
        except Exception as error:  # boundary: music21 raises many exception types on odd tunes; count, go on
            outcome.append(f"music21 {type(error).__name__}")
    return index, outcome


def parse_tune(payload: str | bytes, collection: str, tune_id: str) -> Tune:
    """Parse one tune (ABC text, or a chorale's MusicXML bytes) into a `Tune`.

    Raises:
        SkipTune: the tune cannot be used (the message is the reason); music21's errors pass through.
    """
    score, part = read_score(collection, payload)
    piece = stream_to_piece(score, part)
    melody = encoding.piece_to_tokens(piece)
    if len(piece.parts[0].notes) < MIN_TUNE_NOTES:
        raise SkipTune("too few notes")
    if len(melody.tokens) > MAX_TUNE_STEPS:
        raise SkipTune("too long (steps)")
    chorale = COLLECTIONS[collection].file_format == "musicxml"
    return Tune(
        collection=collection,
        style=style_of(collection, Path(tune_id).name),
        tune_id=tune_id,
        title=chorale_title(tune_id) if chorale else piece.title,
        meter=str(piece.time_signature),
        key=key_name(part),
        tempo_bpm=tempo_of(score),
        bar_steps=melody.bar_steps,
        offset_steps=melody.offset_steps,
        signature=content_signature(melody.tokens),
        tokens=melody.tokens,
    )


# ---------------------------------------------------------------------------------------------------------------
# Content signature and split


def content_signature(tokens: np.ndarray) -> str:
    """Hex digest of a melody's transposition-invariant content: each onset's interval from the previous onset's
    pitch, interleaved with the HOLD/REST tokens that give durations. Transposed copies share a signature."""
    tokens = np.asarray(tokens, dtype=np.int64)
    onsets = tokens >= encoding.NOTE_ON
    pitches = tokens[onsets]
    intervals = np.diff(pitches, prepend=pitches[:1])  # first onset → 0
    content = tokens.copy()
    content[onsets] = 1000 + intervals  # 1000 ± interval never collides with REST (0) / HOLD (1)
    return hashlib.sha256(content.astype(np.int32).tobytes()).hexdigest()


def split_of(signature: str, seed: int) -> str:
    """Split of a tune from its content signature and the split seed (80/10/10)."""
    bucket = int(hashlib.sha256(f"{seed}:{signature}".encode()).hexdigest()[:8], 16) % 100
    return SPLITS[0] if bucket < SPLIT_PERCENT[0] else SPLITS[1] if bucket < sum(SPLIT_PERCENT[:2]) else SPLITS[2]


def assign_splits(
    tunes: list[Tune], seed: int, group_near_duplicates: bool = True
) -> tuple[list[str], Grouping | None]:
    """The split of every tune: `split_of` its signature, or with grouping, of its near-duplicate group's smallest
    signature (so the split of a group does not depend on the order of the tunes)."""
    if not group_near_duplicates:
        return [split_of(tune.signature, seed) for tune in tunes], None
    started = time.perf_counter()
    found = dedupe.find_near_duplicates([tune.tokens for tune in tunes])
    smallest: dict[int, str] = {}
    for group, tune in zip(found.groups.tolist(), tunes, strict=True):
        smallest[group] = min(smallest.get(group, tune.signature), tune.signature)
    splits = [split_of(smallest[group], seed) for group in found.groups.tolist()]
    moved = sum(split != split_of(tune.signature, seed) for split, tune in zip(splits, tunes, strict=True))
    seconds = round(time.perf_counter() - started, 3)
    return splits, Grouping(found.group_count(), found.grouped_tunes(), moved, dedupe.THRESHOLD, dedupe.NGRAM, seconds)


# ---------------------------------------------------------------------------------------------------------------
# Statistics: `musegen data stats`


def add_stats_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of `musegen data stats`."""
    parser.add_argument(
        "--collections", type=_collection_list, default=list(COLLECTIONS), help=f"comma list of {list(COLLECTIONS)}"
    )
    parser.add_argument("--seed", type=int, default=0, help="split seed")
    parser.add_argument("--max-tunes", type=int, default=None, help="per collection, for quick looks and tests")
    parser.add_argument("--workers", type=int, default=2, help="parser processes (when a collection is built)")
    parser.add_argument("--json", action="store_true", help="print JSON instead of Markdown tables")


def _collection_list(text: str) -> list[str]:
    names = [name.strip() for name in text.split(",") if name.strip()]
    unknown = [name for name in names if name not in COLLECTIONS]
    if unknown or not names:
        raise argparse.ArgumentTypeError(f"choose from {', '.join(COLLECTIONS)} (received {text!r})")
    return names


def run_stats(args: argparse.Namespace) -> int:
    """Load (building where needed) the corpus and print its statistics; returns a process exit code."""
    names = args.collections
    started = time.perf_counter()
    corpus = load_corpus(names, seed=args.seed, max_tunes=args.max_tunes, workers=args.workers)
    summary = {"collections": names, "seed": args.seed, "max_tunes": args.max_tunes, **corpus.summary()}
    summary["load_seconds"] = round(time.perf_counter() - started, 2)
    print(json.dumps(summary, indent=2) if args.json else stats_markdown(summary))
    return 0
