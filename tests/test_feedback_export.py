"""`musegen feedback export`: manifest, content hash, determinism, per-rater weights, duplicates and skips, and the
dataset reader the fine-tuner uses (on SQLite and PostgreSQL)."""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
from pathlib import Path

import pytest

from musegen_core import cli
from musegen_core.errors import StoreError
from musegen_core.feedback import PairTake, PairVote, Rating
from musegen_core.feedback.dataset import DatasetError, load_dataset
from musegen_core.feedback.export import content_sha256, export_dataset


def _take(midi: bytes, model: str = "lstm-folk", version: str = "1", seed: int = 0) -> PairTake:
    return PairTake(midi, model, version, seed, {"bars": 4, "seed": seed, "style": "irish"})


def _fill(store) -> None:  # type: ignore[no-untyped-def]
    """3 ratings (one unattributed), pair votes by a heavy rater (120), a light one (3, one repeated) and a skip."""
    for i, (stars, rater) in enumerate(((5, "ada"), (2, None), (4, "bo"))):
        store.add(Rating(stars, "lstm-folk", "1", i, {"style": "irish", "seed": i}, b"prime-0", f"take-{i}".encode(),
                         "tune.mid", f"c{i}", ("catchy",) if i == 0 else (), rater))  # fmt: skip
    for i in range(120):
        store.add_pair_vote(PairVote(b"prime-0", _take(f"h{i}".encode()), _take(b"take-0", "lstm-folk", "2"),
                                     "ab"[i % 2], "heavy"))  # fmt: skip
    store.add_pair_vote(PairVote(b"prime-1", _take(b"x"), _take(b"y", version="2"), "a", "light", tags=["boring"]))
    store.add_pair_vote(PairVote(b"prime-1", _take(b"y", version="2"), _take(b"x"), "a", "light"))  # replaces it
    store.add_pair_vote(PairVote(b"prime-1", _take(b"x"), _take(b"z"), "tie", "light"))
    store.add_pair_vote(PairVote(b"prime-1", _take(b"z"), _take(b"w"), "skip", "light"))  # not exported


def _jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def test_export_writes_a_self_describing_dataset(open_store, tmp_path: Path) -> None:
    store = open_store()
    _fill(store)
    out = tmp_path / "dataset"
    manifest = export_dataset(store, out)

    assert json.loads((out / "manifest.json").read_text()) == manifest
    assert (manifest["format"], manifest["format_version"], manifest["schema_revision"]) == (
        "musegen-feedback",
        1,
        "0002",
    )
    assert manifest["counts"] == {
        "ratings": 3, "pairs": 122, "pieces": 3 + 1 + 120 + 3 + 1, "raters": 4, "unattributed_ratings": 1,
        "skipped_pairs_excluded": 1,
    }  # fmt: skip
    assert manifest["weighting"]["policy"] == "per-rater-cap" and manifest["weighting"]["cap"] == 50
    assert set(manifest["fields"]) == {"ratings.jsonl", "pairs.jsonl"}

    pieces = sorted((out / "pieces").iterdir())
    assert len(pieces) == manifest["counts"]["pieces"]
    assert all(hashlib.sha256(p.read_bytes()).hexdigest() == p.stem and p.suffix == ".mid" for p in pieces)
    assert manifest["content_sha256"] == content_sha256(out)
    for name in ("ratings.jsonl", "pairs.jsonl"):
        assert manifest["files"][name] == hashlib.sha256((out / name).read_bytes()).hexdigest()
    if shutil.which("find") and shutil.which("sha256sum"):  # the recipe in the export module's doc
        recipe = "find . -type f ! -name manifest.json -printf '%P\\n' | LC_ALL=C sort | xargs sha256sum | sha256sum"
        shell = subprocess.run(["bash", "-c", recipe], cwd=out, capture_output=True, text=True, check=True)
        assert shell.stdout.split()[0] == manifest["content_sha256"]

    ratings = _jsonl(out / "ratings.jsonl")
    assert [(r["stars"], r["rater"] is None, r["tags"], r["style"]) for r in ratings] == [
        (5, False, ["catchy"], "irish"), (2, True, [], "irish"), (4, False, [], "irish")
    ]  # fmt: skip
    assert all(r["weight"] == 1.0 for r in ratings)
    assert (out / "pieces" / f"{ratings[0]['take']}.mid").read_bytes() == b"take-0"
    assert "ada" not in (out / "ratings.jsonl").read_text()  # raters are pseudonymous

    pairs = _jsonl(out / "pairs.jsonl")
    assert {p["choice"] for p in pairs} == {"a", "b", "tie"}
    by_rater: dict[str, list[dict]] = {}
    for pair in pairs:
        by_rater.setdefault(pair["rater"], []).append(pair)
    heavy, light = sorted(by_rater.values(), key=len, reverse=True)
    assert len(heavy) == 120 and all(p["weight"] == pytest.approx(50 / 120) for p in heavy)
    assert sum(p["weight"] for p in heavy) == pytest.approx(50)  # one rater: at most `cap` effective votes
    assert len(light) == 2 and all(p["weight"] == 1.0 for p in light)  # the repeated vote counts once
    replaced = next(p for p in light if p["choice"] == "a")
    assert replaced["tags"] == [] and replaced["a"]["model_version"] == "2"  # the latest vote, as it was given


def test_export_is_deterministic_but_for_the_created_time(open_store, tmp_path: Path) -> None:
    store = open_store()
    _fill(store)
    first = export_dataset(store, tmp_path / "one", rater_cap=10)
    second = export_dataset(store, tmp_path / "two", rater_cap=10)
    files = sorted(p.relative_to(tmp_path / "one") for p in (tmp_path / "one").rglob("*") if p.is_file())
    assert files == sorted(p.relative_to(tmp_path / "two") for p in (tmp_path / "two").rglob("*") if p.is_file())
    for path in files:
        if path.name != "manifest.json":
            assert (tmp_path / "one" / path).read_bytes() == (tmp_path / "two" / path).read_bytes(), path
    assert {**first, "created": ""} == {**second, "created": ""}
    assert first["content_sha256"] == second["content_sha256"]

    store.add(Rating(3, "lstm-folk", "1", 9, {}, b"prime-0", b"take-new", rater="ada"))
    assert export_dataset(store, tmp_path / "three")["content_sha256"] != first["content_sha256"]


def test_export_refuses_to_overwrite_what_is_not_an_export(open_store, tmp_path: Path) -> None:
    store = open_store()
    _fill(store)
    taken = tmp_path / "taken"
    taken.mkdir()
    (taken / "notes.txt").write_text("mine")
    with pytest.raises(StoreError, match="not empty"):
        export_dataset(store, taken)
    assert (taken / "notes.txt").read_text() == "mine"

    out = tmp_path / "dataset"
    export_dataset(store, out)
    with pytest.raises(StoreError, match="--force"):
        export_dataset(store, out)
    store.add(Rating(1, "lstm-folk", "1", 9, {}, b"p", b"t"))
    assert export_dataset(store, out, force=True)["counts"]["ratings"] == 4
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no staging folder left behind
    with pytest.raises(StoreError, match="at least 1"):
        export_dataset(store, tmp_path / "other", rater_cap=0)


def test_dataset_reader_gives_typed_records_and_checks_the_hash(open_store, tmp_path: Path) -> None:
    store = open_store()
    _fill(store)
    out = tmp_path / "dataset"
    manifest = export_dataset(store, out)

    data = load_dataset(out)
    assert data.content_sha256 == manifest["content_sha256"] and data.format_version == 1
    assert len(data.ratings) == 3 and len(data.pairs) == 122
    first = data.ratings[0]
    assert (first.stars, first.weight, first.prime_midi, first.take_midi) == (5, 1.0, b"prime-0", b"take-0")
    assert (first.model_name, first.model_version, first.controls, first.tags) == (
        "lstm-folk", "1", {"style": "irish", "seed": 0}, ("catchy",)
    )  # fmt: skip
    assert first.created.tzinfo is not None
    pair = data.pairs[0]
    assert pair.choice == "a" and pair.preferred is pair.a and pair.rejected is pair.b
    assert (pair.a.midi, pair.b.midi, pair.prime_midi) == (b"h0", b"take-0", b"prime-0")
    assert pair.models == (("lstm-folk", "1"), ("lstm-folk", "2"))
    tie = next(p for p in data.pairs if p.choice == "tie")
    assert tie.preferred is None and tie.rejected is None
    assert data.models() == {("lstm-folk", "1"), ("lstm-folk", "2")}
    assert data.pieces[first.take_sha256] is first.take_midi

    (out / "pieces" / f"{first.take_sha256}.mid").write_bytes(b"tampered")
    with pytest.raises(DatasetError, match="content hash"):
        load_dataset(out)
    assert load_dataset(out, verify=False).ratings[0].take_midi == b"tampered"

    newer = json.loads((out / "manifest.json").read_text())
    newer["format_version"] = 99
    (out / "manifest.json").write_text(json.dumps(newer))
    with pytest.raises(DatasetError, match="version 99"):
        load_dataset(out)
    with pytest.raises(DatasetError, match="not found"):
        load_dataset(tmp_path / "nowhere")


def test_an_empty_database_exports_an_empty_dataset(open_store, tmp_path: Path) -> None:
    manifest = export_dataset(open_store(), tmp_path / "empty")
    assert manifest["counts"]["ratings"] == manifest["counts"]["pairs"] == manifest["counts"]["pieces"] == 0
    data = load_dataset(tmp_path / "empty")
    assert data.ratings == () and data.pairs == ()


def test_cli_export_and_stats(db_url: str, open_store, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    _fill(open_store())
    out = tmp_path / "cli-dataset"
    assert cli.main(["feedback", "export", str(out), "--db", db_url, "--rater-cap", "20"]) == 0
    line = capsys.readouterr().out
    assert "3 ratings, 122 pairs (1 skips left out)" in line and "rater cap 20" in line
    assert load_dataset(out).manifest["weighting"]["cap"] == 20
    assert cli.main(["feedback", "export", str(out), "--db", db_url]) == 1  # exists: needs --force
    assert "--force" in capsys.readouterr().err

    assert cli.main(["feedback", "stats", "--db", db_url, "--json"]) == 0
    stats = json.loads(capsys.readouterr().out)
    assert stats["counts"]["ratings"] == 3 and stats["counts"]["skipped"] == 1
    [versus] = [w for w in stats["win_rates"] if w["second"] == "lstm-folk/2"]
    assert versus["first_wins"] + versus["second_wins"] + versus["ties"] == 121
    assert cli.main(["feedback", "stats", "--db", db_url]) == 0
    assert "lstm-folk v1 [irish]: 3 ratings" in capsys.readouterr().out
    assert cli.main(["feedback", "upgrade", "--db", db_url]) == 0
    assert "schema revision 0002" in capsys.readouterr().out
