"""Corpus building: ABC tune splitting, Bach soprano lines, parsing rules, skips, style labels, the content-keyed split
with near-duplicate groups, the `.npz` cache and `musegen data stats`."""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from musegen_core import encoding
from musegen_core.training import corpus, sources
from musegen_core.training.corpus import content_signature, load_corpus, split_of
from musegen_core.training.m21_tune import SkipTune
from musegen_core.training.sources import split_tunes

TUNE = "X:{x}\nT: {title}\nM: {meter}\nL: 1/8\nK: {key}\n{body}\n\n"
ESSEN = {
    "lieder.abc": [
        ("Eins", "4/4", "G", "G2AB c2BA | G2D2 G2B2 | d4 B4 |"),
        ("Eins, a tone higher", "4/4", "A", "A2Bc d2cB | A2E2 A2c2 | e4 c4 |"),  # the same tune, transposed
        ("Frei", "none", "C", "CDEF GABc | cBAG FEDC |"),  # free meter: skipped
        ("Kurz", "2/4", "C", "C2 E2 | G4 |"),  # too few notes: skipped
        ("Wechsel", "2/4", "C", "CDEF | [M:3/4] GABc d2 | c2 B2 A2 |"),  # meter change: skipped
        ("Auftakt", "3/4", "C", "G2 | c2 B2 A2 | G4 E2 | F2 D2 B,2 | C6 |"),  # pickup of one beat
    ],
    "han_lieder.abc": [("Shan ge", "2/4", "D", "A2 d2 | f2 e2 | d2 B2 | A4 | d2 e2 | f4 |")],
    "irl.abc": [("Slan", "3/4", "D", "D2 F2 A2 | d4 c2 | B2 A2 F2 | E6 |")],  # Essen's Irish songs
    "test0.abc": [("Probe", "2/4", "C", "CDEF | GABc | c4 G4 |")],  # Essen's test samples: left out
}
ONEILLS = "X: 1\nT: Slurs\nM: 2/4\nL: 1/16\nK: D\nf-g | a3-b g3-a | f4 e3-d | d4-d4 |\n"


def abc(tunes: list[tuple[str, str, str, str]]) -> str:
    header = "% an Essen-style file: several tunes, each from its X: line\n\n"
    return header + "".join(
        TUNE.format(x=i + 1, title=t, meter=m, key=k, body=b) for i, (t, m, k, b) in enumerate(tunes)
    )


@pytest.fixture
def root(tmp_path) -> Path:
    """A small corpus folder laid out like music21's."""
    for name, tunes in ESSEN.items():
        (tmp_path / "essenFolksong").mkdir(exist_ok=True)
        (tmp_path / "essenFolksong" / name).write_text(abc(tunes), encoding="latin-1")
    (tmp_path / "oneills1850").mkdir()
    (tmp_path / "oneills1850" / "0001-0001.abc").write_text(ONEILLS)
    (tmp_path / "bach").mkdir()
    for name in ("bwv1.6.mxl", "bwv846.mxl"):  # a chorale (horn part first) and the C-major prelude
        shutil.copy(corpus.music21_corpus_root() / "bach" / name, tmp_path / "bach" / name)
    return tmp_path


def build(root: Path, cache: Path, **options) -> corpus.Corpus:
    return load_corpus(("essen", "oneills"), root=root, cache_dir=cache, workers=1, progress=False, **options)


def by_title(built: corpus.Corpus) -> dict[str, corpus.Tune]:
    return {tune.title: tune for tune in built.tunes}


def test_split_tunes_at_x_lines():
    text = "% header\nX:1\nT:a\n\nX: 2\nT:b\nnot X: here\n"
    assert split_tunes(text) == ["X:1\nT:a\n\n", "X: 2\nT:b\nnot X: here\n"]


def test_builds_tunes_with_labels_and_counts_skips(root, tmp_path):
    built = build(root, tmp_path / "cache")
    tunes = by_title(built)
    assert sorted(tunes) == ["Auftakt", "Eins", "Eins, a tone higher", "Shan ge", "Slan", "Slurs"]
    assert built.failures == {"essen": Counter({"no meter": 1, "too few notes": 1, "meter change": 1}), "oneills": {}}
    assert tunes["Shan ge"].style == "chinese_folk" and tunes["Eins"].style == "german_folk"
    assert tunes["Slan"].style == "irish" and tunes["Slan"].collection == "essen"
    assert tunes["Slurs"].style == "irish" and tunes["Slurs"].collection == "oneills"
    eins = tunes["Eins"]
    assert (eins.tune_id, eins.meter, eins.key, eins.tempo_bpm) == (
        "essenFolksong/lieder.abc#0",
        "4/4",
        "G major",
        None,
    )
    g4, a4, b4 = (encoding.NOTE_ON + pitch - encoding.MIN_PITCH for pitch in (67, 69, 71))
    assert eins.tokens[:8].tolist() == [g4, 1, 1, 1, a4, 1, b4, 1]  # G2 A B at L:1/8


def test_a_pickup_sets_the_offset(root, tmp_path):
    auftakt = by_title(build(root, tmp_path / "cache"))["Auftakt"]
    assert (auftakt.bar_steps, auftakt.offset_steps) == (12, 8)
    assert auftakt.positions()[4] == 0  # the first full bar starts after the quarter-note pickup


def test_regression_slurs_written_as_ties_keep_both_notes(root, tmp_path):
    # O'Neill's transcriptions write `f-g` for a slur; music21 reads a tie, and its stripTies merged f and g.
    slurs = by_title(build(root, tmp_path / "cache"))["Slurs"]
    onsets = [t - encoding.NOTE_ON + encoding.MIN_PITCH for t in slurs.tokens if t >= encoding.NOTE_ON]
    assert onsets == [78, 79, 81, 83, 79, 81, 78, 76, 74, 74]  # f g a b g a f e d d: the tied d4-d4 is one note
    assert slurs.tokens[-8:].tolist() == [encoding.NOTE_ON + 74 - 43] + [encoding.HOLD] * 7


def test_transposed_duplicates_share_signature_and_split(root, tmp_path):
    tunes = by_title(build(root, tmp_path / "cache"))
    original, transposed = tunes["Eins"], tunes["Eins, a tone higher"]
    assert not np.array_equal(original.tokens, transposed.tokens)
    assert original.signature == transposed.signature
    assert original.signature != tunes["Auftakt"].signature
    for seed in range(30):
        assert split_of(original.signature, seed) == split_of(transposed.signature, seed)


def test_signature_sees_rhythm():
    assert content_signature(np.array([19, 1, 21, 1])) != content_signature(np.array([19, 1, 1, 21]))
    assert content_signature(np.array([19, 1, 21, 0])) == content_signature(np.array([30, 1, 32, 0]))


def test_split_is_deterministic_and_near_80_10_10():
    signatures = [f"{i:064x}" for i in range(20_000)]
    splits = [split_of(s, seed=7) for s in signatures]
    assert splits == [split_of(s, seed=7) for s in signatures]
    assert splits != [split_of(s, seed=8) for s in signatures]
    shares = {name: count / len(splits) for name, count in Counter(splits).items()}
    assert shares == pytest.approx({"train": 0.8, "valid": 0.1, "test": 0.1}, abs=0.01)


def test_same_split_on_every_build(root, tmp_path):
    first, second = build(root, tmp_path / "a"), build(root, tmp_path / "b")
    assert [t.tune_id for t in first.tunes] == [t.tune_id for t in second.tunes]
    assert first.splits == second.splits
    assert sum(len(first.split(name)) for name in corpus.SPLITS) == len(first.tunes)
    with pytest.raises(ValueError, match="received 'dev'"):
        first.split("dev")


def test_second_load_hits_the_cache(root, tmp_path):
    first = build(root, tmp_path / "cache")
    assert first.build_seconds["essen"] > 0 and len(list((tmp_path / "cache").glob("corpus-*.npz"))) == 2
    assert first.cached_build_seconds == first.build_seconds
    started = time.perf_counter()
    second = build(root, tmp_path / "cache")
    assert time.perf_counter() - started < 1.0
    assert second.build_seconds == {"essen": 0.0, "oneills": 0.0}
    assert second.cached_build_seconds == pytest.approx(first.build_seconds)
    assert second.failures == first.failures and second.splits == first.splits
    for old, new in zip(first.tunes, second.tunes, strict=True):
        assert np.array_equal(old.tokens, new.tokens) and new.tokens.dtype == np.int64
        assert {k: v for k, v in vars(old).items() if k != "tokens"} == {
            k: v for k, v in vars(new).items() if k != "tokens"
        }


def test_a_damaged_cache_is_rebuilt(root, tmp_path):
    first = build(root, tmp_path / "cache")
    for path in (tmp_path / "cache").glob("corpus-essen-*.npz"):
        path.write_bytes(path.read_bytes()[:100])
    again = build(root, tmp_path / "cache")
    assert again.build_seconds["essen"] > 0 and again.splits == first.splits


def test_a_changed_file_invalidates_the_cache(root, tmp_path):
    build(root, tmp_path / "cache")
    path = root / "essenFolksong" / "lieder.abc"
    path.write_text(path.read_text() + TUNE.format(x=9, title="Neu", meter="2/4", key="C", body="CDEF GABc | c8 |"))
    rebuilt = build(root, tmp_path / "cache")
    assert "Neu" in by_title(rebuilt) and rebuilt.build_seconds["essen"] > 0


def test_max_tunes_takes_the_first_tunes_of_each_collection(root, tmp_path):
    built = build(root, tmp_path / "cache", max_tunes=2)
    assert [t.title for t in built.tunes] == ["Shan ge", "Slan", "Slurs"]  # files in name order


def test_summary_and_stats_table_count_styles_and_splits(root, tmp_path):
    built = build(root, tmp_path / "cache")
    summary = built.summary()
    assert list(summary["styles"]) == ["german_folk", "chinese_folk", "irish", "all"]  # STYLES order, then all
    german_steps = sum(len(t.tokens) for t in built.tunes if t.style == "german_folk")
    assert summary["styles"]["german_folk"]["all"] == {"tunes": 3, "steps": german_steps}
    assert sum(summary["styles"]["all"][split]["tunes"] for split in corpus.SPLITS) == 6
    assert summary["skipped"]["essen"] == {"no meter": 1, "too few notes": 1, "meter change": 1}
    assert summary["near_duplicates"]["groups"] == 1  # "Eins" and its transposition
    table = built.stats().splitlines()
    assert table[0].startswith("| style | train | valid | test | all | train steps |")
    assert next(row for row in table if row.startswith("| german_folk")).split(" | ")[4] == "3"
    assert any(row.startswith("| essen | 3 | ") for row in table)
    assert table[-1].startswith("Near-duplicates (Jaccard ≥ ")


def test_changed_style_labels_invalidate_the_cache(root, tmp_path, monkeypatch):
    build(root, tmp_path / "cache")
    relabelled = dataclasses.replace(sources.COLLECTIONS["essen"], alt_style={})
    monkeypatch.setitem(sources.COLLECTIONS, "essen", relabelled)
    rebuilt = build(root, tmp_path / "cache")
    assert rebuilt.build_seconds["essen"] > 0 and by_title(rebuilt)["Shan ge"].style == "german_folk"


def test_cache_dir_and_unknown_collections(monkeypatch, tmp_path):
    monkeypatch.setenv("MUSEGEN_CACHE_DIR", str(tmp_path / "elsewhere"))
    assert corpus.default_cache_dir() == tmp_path / "elsewhere"
    with pytest.raises(ValueError, match="unknown collection"):
        load_corpus(["nope"], cache_dir=tmp_path)


def test_styles_are_stable_and_every_collection_has_one():
    assert corpus.STYLES == ("german_folk", "chinese_folk", "irish", "american_fiddle", "bach_chorale")
    labels = {spec.style for spec in sources.COLLECTIONS.values()}
    labels |= {style for spec in sources.COLLECTIONS.values() for style in spec.alt_style.values()}
    assert labels == set(corpus.STYLES)


def test_bach_keeps_the_soprano_and_skips_a_prelude(root, tmp_path):
    built = load_corpus(["bach"], root=root, cache_dir=tmp_path / "cache", workers=1, progress=False)
    assert built.failures == {"bach": Counter({"no soprano part (not a chorale)": 1})}
    (chorale,) = built.tunes
    assert (chorale.tune_id, chorale.title, chorale.style) == ("bach/bwv1.6.mxl#0", "BWV 1.6", "bach_chorale")
    assert (chorale.meter, chorale.key, chorale.bar_steps, chorale.offset_steps) == ("4/4", "F major", 16, 12)
    onsets = [t - encoding.NOTE_ON + encoding.MIN_PITCH for t in chorale.tokens if t >= encoding.NOTE_ON]
    assert onsets[:8] == [65, 72, 69, 65, 72, 74, 74, 72]  # "Wie schön leuchtet der Morgenstern": F C A F C D D C
    assert chorale.tokens[:8].tolist() == [encoding.NOTE_ON + 65 - 43, 1, 1, 1, encoding.NOTE_ON + 72 - 43, 1, 1, 1]


def test_a_chorale_with_a_meter_change_is_skipped():
    data = (corpus.music21_corpus_root() / "bach" / "bwv304.mxl").read_bytes()  # 4/4 with a 3/4 bar
    with pytest.raises(SkipTune, match="meter change"):
        corpus.parse_tune(data, "bach", "bach/bwv304.mxl#0")


def test_real_collections_carry_their_style_labels(tmp_path):
    built = load_corpus(list(sources.COLLECTIONS), max_tunes=2, workers=1, progress=False, cache_dir=tmp_path)
    styles = {(tune.collection, tune.style) for tune in built.tunes}
    expected = {("essen", "german_folk"), ("oneills", "irish"), ("ryans", "american_fiddle"), ("bach", "bach_chorale")}
    assert styles == expected
    assert all(tune.meter and tune.bar_steps > 0 for tune in built.tunes)


def test_data_stats_command_prints_json(tmp_path):
    command = [sys.executable, "-m", "musegen_core.cli", "data", "stats", "--json", "--max-tunes", "3"]
    command += ["--collections", "oneills,bach", "--workers", "1"]
    env = {**os.environ, "MUSEGEN_CACHE_DIR": str(tmp_path)}
    done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    stats = json.loads(done.stdout)
    assert stats["collections"] == ["oneills", "bach"] and stats["max_tunes"] == 3
    assert stats["styles"]["bach_chorale"]["all"]["tunes"] == 3
    assert stats["styles"]["irish"]["all"]["tunes"] + sum(stats["skipped"]["oneills"].values()) == 3
    assert stats["build_seconds"]["bach"] > 0 and stats["near_duplicates"]["threshold"] > 0
    assert len(list(tmp_path.glob("corpus-bach-*.npz"))) == 1


def test_music21_corpus_in_worker_processes(tmp_path):
    """The real O'Neill's files, parsed by a 2-process pool, give what one process gives."""
    pooled = load_corpus(["oneills"], max_tunes=8, workers=2, progress=False, cache_dir=tmp_path / "a")
    single = load_corpus(["oneills"], max_tunes=8, workers=1, progress=False, cache_dir=tmp_path / "b")
    assert len(pooled.tunes) >= 7
    assert [t.title for t in pooled.tunes] == [t.title for t in single.tunes]
    assert all(np.array_equal(a.tokens, b.tokens) for a, b in zip(pooled.tunes, single.tunes, strict=True))
    assert pooled.tunes[1].title == "Fare You Well" and pooled.tunes[1].offset_steps == 6  # 2/4, 2-sixteenth pickup
