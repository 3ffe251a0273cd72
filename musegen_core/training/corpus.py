"""Training corpus: folk tunes from music21's bundled ABC collections, as melody tokens, cached and split.

Collections (see `COLLECTIONS`): Essen (German and Chinese folk songs; **non-commercial licence**), O'Neill's Music of
Ireland (1850) and Ryan's Mammoth Collection (public domain). Each ABC file is split into tunes at its `X:` lines, each
tune parsed with music21's ABC converter (never its pickle cache), reduced to a `Piece` and encoded with
`musegen_core.encoding`. The built corpus of each collection is cached as one `.npz` (no pickles) under
`MUSEGEN_CACHE_DIR` (default `~/.cache/musegen`), keyed by the corpus files, the encoding version and this module's
`CORPUS_VERSION`. Tunes are split 80/10/10 by a hash of the seed and a transposition-invariant content signature, so
exact duplicates and transpositions always fall into the same split.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import time
import zipfile
from collections import Counter
from dataclasses import asdict, dataclass, field
from multiprocessing import Pool
from pathlib import Path

import numpy as np
from tqdm import tqdm

from musegen_core import encoding
from musegen_core.training.m21_tune import SkipTune, key_name, stream_to_piece, tempo_of

CORPUS_VERSION = 1  # bump when the tune → tokens conversion changes (invalidates caches)
MAX_TUNE_CHARS = 20_000  # ABC text longer than this is skipped unparsed (guards against runaway parses)
MAX_TUNE_STEPS = 4096  # tunes longer than this many sixteenth steps (256 bars of 4/4) are skipped
MIN_TUNE_NOTES = 8  # shorter tunes are skipped (fragments, incipits)
CHUNK_TUNES = 100  # tunes per worker task
METER_FIELD = re.compile(r"(?m)^M:\s*([^\s%]+)|\[M:\s*([^\]]+)\]")  # header/body `M:` lines, inline `[M:..]`
SPLITS = ("train", "valid", "test")
SPLIT_PERCENT = (80, 10, 10)


@dataclass(frozen=True)
class Collection:
    """One music21 corpus folder: where it is, how to label its tunes, and under what licence it may be used."""

    folder: str  # folder under music21's corpus directory
    licence: str  # short licence statement for model cards
    commercial_use: bool  # may models trained on it be used commercially?
    style: str  # style label of its tunes
    alt_style: dict[str, str] = field(default_factory=dict)  # file-name prefix → style overriding `style`


COLLECTIONS = {
    "essen": Collection(
        "essenFolksong",
        "Essen Folksong Collection (ABC by S. Schlien): non-commercial distribution and use only",
        False,
        "german_folk",
        {"han": "chinese_folk"},
    ),
    "oneills": Collection("oneills1850", "O'Neill's Music of Ireland (1850): public domain", True, "irish"),
    "ryans": Collection("ryansMammoth", "Ryan's Mammoth Collection (1883): public domain", True, "american_fiddle"),
}


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


@dataclass
class Corpus:
    """Tunes of one or more collections plus their split assignment (`splits[i]` is the split of `tunes[i]`)."""

    tunes: list[Tune]
    splits: list[str]
    failures: dict[str, Counter]  # collection → reason → number of tunes skipped
    build_seconds: dict[str, float]  # collection → seconds spent parsing (0.0 when loaded from the cache)

    def split(self, name: str) -> list[Tune]:
        """The tunes of one split: "train", "valid" or "test"."""
        if name not in SPLITS:
            raise ValueError(f"split must be one of {SPLITS} (received {name!r})")
        return [tune for tune, split in zip(self.tunes, self.splits, strict=True) if split == name]

    def stats(self) -> str:
        """A Markdown table of tunes per collection and split, with total steps and skipped tunes."""
        lines = [
            "| collection | train | valid | test | steps | skipped |",
            "| --- | ---: | ---: | ---: | ---: | ---: |",
        ]
        rows = {name: Counter() for name in self.failures}
        for tune, split in zip(self.tunes, self.splits, strict=True):
            rows.setdefault(tune.collection, Counter()).update({split: 1, "steps": len(tune.tokens)})
        for name, reasons in self.failures.items():
            rows[name]["skipped"] = sum(reasons.values())
        rows["**all**"] = sum(rows.values(), Counter())
        for name, row in rows.items():
            lines.append(f"| {name} | " + " | ".join(str(row[c]) for c in (*SPLITS, "steps", "skipped")) + " |")
        return "\n".join(lines)

    def counts(self) -> dict[str, int]:
        """Number of tunes per split."""
        return {name: self.splits.count(name) for name in SPLITS}


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
    collections: tuple[str, ...] | list[str] = ("essen", "oneills", "ryans"),
    *,
    seed: int = 0,
    max_tunes: int | None = None,
    workers: int = 2,
    progress: bool = True,
    cache_dir: Path | str | None = None,
    root: Path | str | None = None,
) -> Corpus:
    """Load (building and caching where needed) the tunes of the given collections and split them.

    Args:
        collections: keys of `COLLECTIONS`.
        seed: split seed; the split of a tune depends only on the seed and its content.
        max_tunes: per collection, keep only the first this many tunes (in file order) — for quick tests.
        workers: parser processes for a build (1 parses in this process).
        progress: show a tqdm progress bar while building.
        cache_dir: where `.npz` caches live (default `default_cache_dir()`).
        root: corpus folder holding the collection folders (default music21's).
    """
    unknown = [name for name in collections if name not in COLLECTIONS]
    if unknown:
        raise ValueError(f"unknown collection(s) {unknown}; choose from {sorted(COLLECTIONS)}")
    root = Path(root) if root else music21_corpus_root()
    cache = Path(cache_dir) if cache_dir else default_cache_dir()
    tunes: list[Tune] = []
    failures: dict[str, Counter] = {}
    seconds: dict[str, float] = {}
    for name in collections:
        built, failures[name], seconds[name] = _load_collection(name, root, cache, max_tunes, workers, progress)
        tunes.extend(built)
    return Corpus(tunes, [split_of(t.signature, seed) for t in tunes], failures, seconds)


def _load_collection(
    name: str, root: Path, cache: Path, max_tunes: int | None, workers: int, progress: bool
) -> tuple[list[Tune], Counter, float]:
    files = sorted((root / COLLECTIONS[name].folder).glob("*.abc"))
    if not files:
        raise FileNotFoundError(f"no .abc files for collection {name!r} under {root / COLLECTIONS[name].folder}")
    path = cache / f"corpus-{name}-{_cache_key(files, root, max_tunes)}.npz"
    if path.exists():
        try:
            tunes, failures = _read_cache(path)
            return tunes, failures, 0.0
        except (OSError, ValueError, KeyError, TypeError, zipfile.BadZipFile):  # damaged cache: build it again
            path.unlink(missing_ok=True)
    start = time.perf_counter()
    tunes, failures = _build_collection(name, files, root, max_tunes, workers, progress)
    seconds = time.perf_counter() - start
    _write_cache(path, tunes, failures, seconds)
    return tunes, failures, seconds


def _cache_key(files: list[Path], root: Path, max_tunes: int | None) -> str:
    listing = [(str(f.relative_to(root)), f.stat().st_size) for f in files]
    blob = json.dumps([encoding.ENCODING_VERSION, CORPUS_VERSION, max_tunes, listing])
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


def _read_cache(path: Path) -> tuple[list[Tune], Counter]:
    with np.load(path, allow_pickle=False) as data:
        tokens, offsets = data["tokens"].astype(np.int64), data["offsets"]
        meta = json.loads(str(data["meta"]))
    tunes = [Tune(**fields, tokens=tokens[offsets[i] : offsets[i + 1]]) for i, fields in enumerate(meta["tunes"])]
    return tunes, Counter(meta["failures"])


# ---------------------------------------------------------------------------------------------------------------
# Building: split files into tunes, parse them in worker processes


def split_tunes(text: str) -> list[str]:
    """The tunes of an ABC file: each starts at an `X:` line (text before the first one is dropped)."""
    return [chunk for chunk in re.split(r"(?m)^(?=X:)", text) if chunk.startswith("X:")]


def _build_collection(
    name: str, files: list[Path], root: Path, max_tunes: int | None, workers: int, progress: bool
) -> tuple[list[Tune], Counter]:
    tasks = _tasks(name, files, root, max_tunes)
    total = sum(len(texts) for *_, texts in tasks)
    results: dict[tuple[str, int], list] = {}
    bar = tqdm(total=total, desc=f"parsing {name}", unit="tune", disable=not progress)
    with Pool(workers) if workers > 1 else _InProcess() as pool:
        for task, outcome in pool.imap_unordered(_parse_task, tasks):
            results[task] = outcome
            bar.update(len(outcome))
    bar.close()
    ordered = [results[(rel, first)] for _, rel, first, _ in tasks]  # file order, whatever the finishing order
    tunes = [item for outcome in ordered for item in outcome if isinstance(item, Tune)]
    failures = Counter(item for outcome in ordered for item in outcome if isinstance(item, str))
    return tunes, failures


def _tasks(name: str, files: list[Path], root: Path, max_tunes: int | None) -> list[tuple[str, str, int, list[str]]]:
    """(collection, file path relative to root, index of the first tune, tune texts), `CHUNK_TUNES` tunes each."""
    tasks, left = [], max_tunes
    for path in files:
        texts = split_tunes(path.read_text(encoding="latin-1"))
        if left is not None:
            texts, left = texts[:left], max(0, left - len(texts))
        rel = str(path.relative_to(root))
        tasks += [(name, rel, i, texts[i : i + CHUNK_TUNES]) for i in range(0, len(texts), CHUNK_TUNES)]
        if left == 0:
            break
    return tasks


class _InProcess:
    """Stands in for `multiprocessing.Pool` when `workers == 1` (debuggable, no fork)."""

    def __enter__(self) -> _InProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def imap_unordered(self, function, items):
        return map(function, items)


def _parse_task(task: tuple[str, str, int, list[str]]) -> tuple[tuple[str, int], list[Tune | str]]:
    """Parse one chunk of tunes; each result is a `Tune` or the reason (a short string) it was skipped."""
    name, rel, first, texts = task
    outcome: list[Tune | str] = []
    for index, text in enumerate(texts, start=first):
        try:
            outcome.append(parse_tune(text, name, f"{rel}#{index}"))
        except SkipTune as skip:
            outcome.append(str(skip))
        except Exception as error:
            outcome.append(f"music21 {type(error).__name__}")
    return (rel, first), outcome


def parse_tune(text: str, collection: str, tune_id: str) -> Tune:
    """Parse one tune's ABC text into a `Tune`. Raises `SkipTune` (or music21's errors) when it cannot be used."""
    from music21 import converter

    if len(text) > MAX_TUNE_CHARS:
        raise SkipTune("too long (ABC text)")
    if len({(header or inline).strip() for header, inline in METER_FIELD.findall(text)}) > 1:
        raise SkipTune("meter change")
    score = converter.parseData(text, format="abc")
    piece = stream_to_piece(score)
    melody = encoding.piece_to_tokens(piece)
    if len(piece.parts[0].notes) < MIN_TUNE_NOTES:
        raise SkipTune("too few notes")
    if len(melody.tokens) > MAX_TUNE_STEPS:
        raise SkipTune("too long (steps)")
    return Tune(
        collection=collection,
        style=style_of(collection, Path(tune_id).name),
        tune_id=tune_id,
        title=piece.title,
        meter=str(piece.time_signature),
        key=key_name(score),
        tempo_bpm=tempo_of(score),
        bar_steps=melody.bar_steps,
        offset_steps=melody.offset_steps,
        signature=content_signature(melody.tokens),
        tokens=melody.tokens,
    )


def style_of(collection: str, file_name: str) -> str:
    """Style label of a tune from its collection and file name (Essen `han*` files hold Chinese songs)."""
    spec = COLLECTIONS[collection]
    return next((style for prefix, style in spec.alt_style.items() if file_name.startswith(prefix)), spec.style)


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


if __name__ == "__main__":
    corpus = load_corpus()
    print(corpus.stats())
    print({name: round(seconds, 1) for name, seconds in corpus.build_seconds.items()}, dict(corpus.failures))
