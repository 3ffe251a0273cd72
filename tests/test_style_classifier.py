"""The independent style classifier: its features, fitting, save/load, the shipped model and its CLI."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from musegen_core import cli, encoding
from musegen_core.errors import CheckpointError
from musegen_core.evaluation import style_classifier as sc
from musegen_core.models import registry
from musegen_core.training import style_classifier_train as sct
from musegen_core.training.corpus import COLLECTIONS, Corpus, Tune, is_cached, load_corpus


def melody(notes: list[tuple[int | None, int]]) -> np.ndarray:
    """Tokens of (pitch, steps) pairs; pitch None is a rest."""
    tokens = []
    for pitch, steps in notes:
        head = encoding.REST if pitch is None else encoding.NOTE_ON + pitch - encoding.MIN_PITCH
        tokens += [head] + [encoding.HOLD] * (steps - 1)
    return np.array(tokens, dtype=np.int64)


def random_melody(rng: np.random.Generator, bar_steps: int, bars: int, low: int = 60, high: int = 80) -> np.ndarray:
    notes, total = [], 0
    while total < bar_steps * bars:
        steps = min(int(rng.choice([1, 2, 2, 3, 4, 6])), bar_steps * bars - total)
        notes.append((None if rng.random() < 0.1 else int(rng.integers(low, high)), steps))
        total += steps
    return melody(notes)


def transpose(tokens: np.ndarray, semitones: int) -> np.ndarray:
    return np.where(tokens >= encoding.NOTE_ON, tokens + semitones, tokens)


# ---------------------------------------------------------------------------------------------------------------
# Features


@pytest.mark.parametrize("bar_steps", [8, 12, 16])
def test_features_are_transposition_invariant(bar_steps):
    rng = np.random.default_rng(bar_steps)
    for _ in range(5):
        tokens = random_melody(rng, bar_steps, 8)
        reference = sc.feature_vector(tokens, bar_steps)
        for semitones in (-7, -1, 1, 5, 11):
            assert np.allclose(sc.feature_vector(transpose(tokens, semitones), bar_steps), reference, atol=1e-12)


def test_features_of_a_c_major_scale():
    scale = melody([(p, 4) for p in (60, 62, 64, 65, 67, 69, 71, 72)])  # quarter notes, two bars of 4/4
    features = sc.style_features(scale, 16)
    assert sc.estimate_key(np.bincount([0, 2, 4, 5, 7, 9, 11, 0], minlength=12) / 8)[:2] == (0, False)
    expected_degrees = np.zeros(12)
    expected_degrees[[0, 2, 4, 5, 7, 9, 11]] = [2 / 8, 1 / 8, 1 / 8, 1 / 8, 1 / 8, 1 / 8, 1 / 8]
    assert np.allclose(features["tonic_pitch_classes"], expected_degrees)
    intervals = features["interval_histogram"]
    assert intervals[12 + 2] == pytest.approx(5 / 7) and intervals[12 + 1] == pytest.approx(2 / 7)
    assert features["note_length_histogram"][3] == 1.0
    assert np.allclose(features["pitch_spread"], [8, 12, np.std([60, 62, 64, 65, 67, 69, 71, 72]), 6.25 / 12])
    assert features["beat_phase"].tolist() == [1, 0, 0, 0]
    assert features["downbeats"][0] == 1 and features["syncopation"][0] == 0 and features["rest_share"][0] == 0
    assert features["notes_per_bar"].tolist() == [4, 0] and features["onsets_per_beat"][0] == 1
    assert features["meter"].tolist() == [0, 0, 0, 1, 0, 0, 0, 0]
    assert len(sc.feature_vector(scale, 16)) == len(sc.FEATURE_NAMES) == 77


def test_rhythm_features_of_a_syncopated_bar_with_a_rest():
    bar = melody([(67, 2), (69, 4), (67, 2), (65, 4), (None, 4)])  # onsets 0, 2, 6, 8; 2 → 6 crosses beat 4
    features = sc.style_features(bar, 16)
    assert features["beat_phase"].tolist() == [0.5, 0, 0.5, 0]
    assert features["syncopation"][0] == 0.25 and features["rest_share"][0] == 0.25
    assert features["notes_per_bar"].tolist() == [4, 0] and features["meter"][-1] == 0
    assert sc.style_features(bar, 10)["meter"].tolist() == [0] * 7 + [1]  # 10 steps: "other"


def test_a_minor_melody_has_a_minor_tonic_and_silence_gives_zeros():
    a_minor = melody([(p, 4) for p in (69, 72, 76, 69, 71, 72, 74, 76, 72, 71, 69, 64, 69)])
    histogram = sc.style_features(a_minor, 16)["tonic_pitch_classes"]
    counts = np.bincount(np.array([69, 72, 76, 69, 71, 72, 74, 76, 72, 71, 69, 64, 69]) % 12, minlength=12) / 13
    assert sc.estimate_key(counts)[:2] == (9, True) and histogram[0] == pytest.approx(4 / 13)
    silent = sc.feature_vector(melody([(None, 16)]), 16)
    assert np.isfinite(silent).all() and silent[: 12 + 2 + 25 + 16 + 4].sum() == 0


# ---------------------------------------------------------------------------------------------------------------
# Fitting, save and load


def two_style_melodies(seed: int, count: int) -> tuple[list[tuple[np.ndarray, int]], list[str]]:
    """Stepwise quarter notes in 4/4 ("german_folk") against leaping eighth notes in 6/8 ("irish")."""
    rng = np.random.default_rng(seed)
    melodies, styles = [], []
    for _ in range(count):
        start = int(rng.integers(55, 70))
        steps = np.cumsum(rng.choice([-2, -1, 1, 2], size=32))
        melodies.append((melody([(start + int(s) % 12, 4) for s in steps]), 16))
        leaps = rng.choice([-7, -5, 5, 7], size=48)
        melodies.append((melody([(start + int(s) % 24, 2) for s in np.cumsum(leaps)]), 12))
        styles += ["german_folk", "irish"]
    return melodies, styles


@pytest.fixture(scope="module")
def tiny() -> sc.StyleClassifier:
    melodies, styles = two_style_melodies(0, 30)
    labels = np.array([["german_folk", "irish"].index(s) for s in styles])
    torch.set_num_threads(1)
    net = sct.fit(sc.feature_matrix(melodies), labels, 2, hidden=8, l2=1e-3, seed=0)
    return sc.StyleClassifier(net, ("german_folk", "irish"), {"training": {"seed": 0}})


def test_a_tiny_classifier_learns_separable_styles(tiny):
    melodies, styles = two_style_melodies(1, 20)
    assert tiny.predict_batch(melodies) == styles
    posteriors = tiny.posteriors(*melodies[0])
    assert list(posteriors) == ["german_folk", "irish"] and sum(posteriors.values()) == pytest.approx(1.0)
    assert posteriors["german_folk"] > 0.9 and tiny.predict(*melodies[1]) == "irish"
    hits = sc.style_hits(tiny.predict_batch(melodies), ["irish"] * len(melodies))
    assert hits["hit_rate"] == 0.5 and hits["by_style"]["irish"]["count"] == 40


def test_save_and_load_round_trip_bit_exact(tiny, tmp_path):
    folder = tiny.save(tmp_path / "clf", "# card\n")
    assert sorted(p.name for p in folder.iterdir()) == ["README.md", "config.json", "model.safetensors"]
    assert all(p.stat().st_mode & 0o777 == 0o644 for p in folder.iterdir())
    loaded = sc.StyleClassifier.load(folder)
    assert loaded.styles == tiny.styles and loaded.hidden == 8 and loaded.meta["training"] == {"seed": 0}
    for name, tensor in tiny.net.state_dict().items():
        assert torch.equal(loaded.net.state_dict()[name], tensor)
    melodies, _ = two_style_melodies(2, 5)
    assert np.array_equal(loaded.posteriors_batch(melodies), tiny.posteriors_batch(melodies))
    config = json.loads((folder / "config.json").read_text())
    assert config["kind"] == "style-classifier" and config["features"] == list(sc.FEATURE_NAMES)
    assert "family" not in config


def test_load_refuses_changed_weights_or_other_features(tiny, tmp_path):
    folder = tiny.save(tmp_path / "clf")
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps(config | {"features": config["features"][:-1]}))
    with pytest.raises(CheckpointError, match="other features"):
        sc.StyleClassifier.load(folder)
    (folder / "config.json").write_text(json.dumps(config))
    (folder / "model.safetensors").write_bytes((folder / "model.safetensors").read_bytes()[:-4] + b"\0\0\0\0")
    with pytest.raises(CheckpointError, match="sha256"):
        sc.StyleClassifier.load(folder)
    with pytest.raises(CheckpointError, match="no readable style classifier"):
        sc.StyleClassifier.load(tmp_path / "missing")


def test_a_classifier_in_the_models_folder_is_no_generator(tiny, tmp_path, monkeypatch):
    monkeypatch.setenv("MUSEGEN_MODELS_DIR", str(tmp_path))
    tiny.save(tmp_path / sc.SHIPPED_NAME)
    assert registry.list_models() == [] and sc.shipped_dir() == tmp_path / "style-classifier"
    with pytest.raises(CheckpointError):
        registry.load_model("style-classifier")
    with pytest.raises(CheckpointError, match=r"installed: none"):
        registry.load_model("nope")


# ---------------------------------------------------------------------------------------------------------------
# The command line, on a tiny synthetic corpus


def synthetic_corpus() -> Corpus:
    """Twelve-bar tunes of two styles in every split (the melodies of `two_style_melodies`, 8 bars + 4 more)."""
    tunes, splits = [], []
    for index, split in enumerate(["train"] * 16 + ["valid"] * 4 + ["test"] * 4):
        melodies, styles = two_style_melodies(100 + index, 1)
        for (tokens, bar_steps), style in zip(melodies, styles, strict=True):
            tokens = np.concatenate([tokens, tokens[: 4 * bar_steps]])
            collection = "essen" if style == "german_folk" else "oneills"
            meter = "4/4" if bar_steps == 16 else "6/8"
            tunes.append(Tune(collection, style, f"{style}/{index}", "t", meter, "", None, bar_steps, 0, "", tokens))
            splits.append(split)
    return Corpus(tunes, splits, {}, {})


def test_train_and_eval_commands_write_a_classifier_a_card_and_a_report(tmp_path, monkeypatch):
    monkeypatch.setattr(sct, "_corpus", lambda workers: synthetic_corpus())
    monkeypatch.setattr(sct, "GRID", ((0, 1e-3), (8, 1e-3)))
    out, report = tmp_path / "clf", tmp_path / "bench" / "style.json"
    assert cli.main(["style-classifier", "train", "--out", str(out), "--seed", "3"]) == 0
    card = (out / "README.md").read_text()
    assert "non-commercial" in card and "| true \\ predicted |" in card and "--seed 3" in card
    assert cli.main(["style-classifier", "eval", "--model", str(out), "--json", str(report)]) == 0
    result = json.loads(report.read_text())
    assert result["styles"] == ["german_folk", "irish"] and result["test_windows"]["seed"] == 3
    assert result["test_windows"]["accuracy"] == 1.0 and result["reference_excerpts"]["count"] == 8
    meta = sc.StyleClassifier.load(out).meta
    assert meta["metrics"]["test"]["accuracy"] == result["test_windows"]["accuracy"]
    assert meta["training"]["windows"]["train"] == 32 * 4


# ---------------------------------------------------------------------------------------------------------------
# The shipped classifier


shipped = pytest.mark.skipif(not (sc.shipped_dir() / sc.CONFIG).is_file(), reason="no shipped style classifier")


def _corpus_cached() -> bool:
    try:
        return is_cached(list(COLLECTIONS))
    except (ImportError, OSError):  # no music21 corpus to key the caches by
        return False


@shipped
def test_the_shipped_classifier_is_small_and_not_a_generator():
    assert "style-classifier" not in [info.name for info in registry.list_models()]
    assert sum(p.stat().st_size for p in sc.shipped_dir().iterdir()) < 100_000
    classifier = sc.StyleClassifier.load()
    assert classifier.styles == ("german_folk", "chinese_folk", "irish", "american_fiddle", "bach_chorale")
    posteriors = classifier.posteriors(melody([(p, 4) for p in (60, 62, 64, 65, 67, 69, 71, 72)] * 4), 16)
    assert sum(posteriors.values()) == pytest.approx(1.0)


@shipped
@pytest.mark.skipif(not _corpus_cached(), reason="corpus cache not built (musegen data stats builds it)")
def test_the_shipped_classifier_recognises_held_out_test_excerpts():
    classifier = sc.StyleClassifier.load()
    corpus = load_corpus(list(COLLECTIONS), progress=False)
    scores = sct.reference_scores(classifier, corpus)
    recorded = classifier.meta["metrics"]["reference_excerpts"]
    assert scores["count"] == 200 and scores["accuracy"] == recorded["accuracy"]
    assert scores["accuracy"] >= 0.85 and scores["accuracy_merged"] >= 0.93
    assert scores["recall"]["chinese_folk"] >= 0.9 and scores["recall"]["bach_chorale"] >= 0.9
