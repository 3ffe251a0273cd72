"""Training: windows and augmentation, then tiny end-to-end runs through `run(args)` into a checkpoint."""

from __future__ import annotations

import argparse
import itertools
import json

import numpy as np
import pytest
import torch

from musegen_core import encoding
from musegen_core.models.checkpoint import load_checkpoint
from musegen_core.training import batches, train
from musegen_core.training.corpus import Tune, load_corpus


def tune(tokens: list[int], bar_steps: int = 12, offset_steps: int = 8, style: str = "german_folk") -> Tune:
    return Tune("essen", style, "x#0", "t", "3/4", "", None, bar_steps, offset_steps, "", np.array(tokens))


def test_windows_align_inputs_positions_and_targets():
    song = tune(list(range(2, 42)))  # 40 distinct onsets: any window shows where it starts
    batch = batches.window_batch([song], np.random.default_rng(0), size=4, window=16, transpose=0)
    assert batch.inputs.shape == batch.positions.shape == batch.targets.shape == (4, 16)
    assert torch.equal(batch.targets[:, :-1], batch.inputs[:, 1:])
    start = batch.inputs[:, 0] - 2  # step index of each window's first input
    expected = (start[:, None] + 1 + torch.arange(16) + 8) % 12  # targets are one step on
    assert torch.equal(batch.positions, expected)


def test_short_tunes_are_padded_and_ignored_by_the_loss():
    batch = batches.window_batch([tune([19, 1, 1, 0, 21])], np.random.default_rng(0), size=2, window=8, transpose=0)
    assert batch.targets[0].tolist() == [1, 1, 0, 21] + [batches.IGNORE] * 4
    assert batch.inputs.min() >= 0


@pytest.mark.parametrize("shift", [-5, -1, 3, 5])
def test_transposition_moves_onsets_only_and_stays_in_range(shift):
    tokens = np.array([0, encoding.NOTE_ON, 1, encoding.VOCAB_SIZE - 3, 1, 0])
    moved = batches.transposed(tokens, shift)
    assert moved[[0, 2, 4, 5]].tolist() == [0, 1, 1, 0]
    assert moved[[1, 3]].min() >= encoding.NOTE_ON and moved.max() < encoding.VOCAB_SIZE
    assert moved[3] - moved[1] == tokens[3] - tokens[1]  # intervals kept, the shift reduced to what fits


def test_lr_warms_up_then_decays_to_a_tenth():
    factors = [train._lr_factor(step, 10, 100) for step in range(101)]
    assert factors[0] == pytest.approx(0.1) and factors[9] == pytest.approx(1.0)
    assert factors[10] == pytest.approx(1.0) and factors[100] == pytest.approx(0.1)
    assert all(a >= b for a, b in itertools.pairwise(factors[10:]))


def test_style_rows_follow_the_tunes_and_style_dropout_blanks_them():
    tunes = [tune([2, 1, 3, 1] * 10, style="irish"), tune([4, 1, 5, 1] * 10, style="german_folk")]
    styles = ("german_folk", "irish")
    assert batches.style_rows(tunes, styles).tolist() == [1, 0]
    assert batches.style_rows([tune([2], style="bach_chorale")], styles).tolist() == [2]  # unknown: any style
    assert batches.style_rows(tunes, ()) is None

    def rows(dropout: float) -> tuple[list[int], list[int]]:
        batch = batches.window_batch(tunes, np.random.default_rng(0), 64, 8, 0, styles=styles, style_dropout=dropout)
        irish = (batch.inputs == 2) | (batch.inputs == 3)  # only the Irish tune holds tokens 2 and 3
        return batch.styles.tolist(), irish.any(dim=1).long().tolist()

    labelled, truth = rows(0.0)
    assert labelled == truth and set(truth) == {0, 1}
    assert rows(1.0)[0] == [2] * 64
    assert 10 < rows(0.5)[0].count(2) < 54


TINY_RUN = ["--collections", "oneills,ryans", "--steps", "6", "--eval-every", "3"]
TINY_RUN += ["--batch-size", "8", "--window", "32", "--valid-windows", "8"]
TINY = {
    "lstm": ["--model", "lstm", "--preset", "lstm-tiny"],
    "transformer": ["--model", "transformer", "--preset", "transformer-tiny"],
}


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    """A corpus cache of 30 O'Neill + 30 Ryan tunes, built once (music21) and shared by the runs below."""
    folder = tmp_path_factory.mktemp("cache")
    load_corpus(["oneills", "ryans"], max_tunes=30, workers=1, progress=False, cache_dir=folder)
    return folder


def arguments(tmp_path, *extra: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    train.add_arguments(parser)
    return parser.parse_args(
        [*TINY_RUN, "--max-tunes", "30", "--device", "cpu", "--workers", "1", "--out", str(tmp_path / "model"), *extra]
    )


@pytest.mark.parametrize("family", sorted(TINY))
def test_tiny_training_run_writes_a_loadable_style_conditioned_checkpoint(tmp_path, monkeypatch, cache, family):
    monkeypatch.setenv("MUSEGEN_CACHE_DIR", str(cache))
    assert train.run(arguments(tmp_path, *TINY[family])) == 0
    loaded = load_checkpoint(tmp_path / "model")
    meta = loaded.meta
    assert meta["family"] == family and loaded.model.styles == ("irish", "american_fiddle")
    assert meta["training"]["steps_done"] == 6 and meta["training"]["device"] == "cpu"
    assert meta["info"]["commercial_use_cleared"] is True  # O'Neill's + Ryan's: public domain
    assert [h["step"] for h in meta["training"]["history"]] == [3, 6]
    metrics = meta["metrics"]
    assert 0 < metrics["test_nll_bits_per_step"] < 10 and 0 < metrics["test_nll_bits_per_step_any_style"] < 10
    assert set(metrics["test_by_style"]) == {"irish", "american_fiddle"} and metrics["sampling_ms_per_16_bars"] > 0
    assert "--max-tunes 30" in meta["training"]["command"] and "--styles" in meta["training"]["command"]
    card = (tmp_path / "model" / "README.md").read_text()
    assert "public domain" in card and "Kneser–Ney" in card and meta["training"]["command"] in card
    assert "| irish |" in card and "ms per 16 bars" not in card and "CPU, one thread" in card
    assert not (tmp_path / "model.resume").exists()  # a finished run leaves no resume checkpoint


def test_no_styles_trains_an_unconditioned_model(tmp_path, monkeypatch, cache):
    monkeypatch.setenv("MUSEGEN_CACHE_DIR", str(cache))
    train.run(arguments(tmp_path, *TINY["lstm"], "--no-styles"))
    loaded = load_checkpoint(tmp_path / "model")
    assert loaded.model.styles == () and "test_nll_bits_per_step_any_style" not in loaded.meta["metrics"]
    assert "--no-styles" in loaded.meta["training"]["command"]


def test_training_is_deterministic(tmp_path, monkeypatch, cache):
    monkeypatch.setenv("MUSEGEN_CACHE_DIR", str(cache))
    train.run(arguments(tmp_path / "a", *TINY["lstm"]))
    train.run(arguments(tmp_path / "b", *TINY["lstm"]))
    first, second = (json.loads((tmp_path / d / "model" / "config.json").read_text()) for d in ("a", "b"))
    assert first["sha256"] == second["sha256"]


@pytest.mark.parametrize("family", sorted(TINY))
def test_interrupted_and_resumed_run_equals_an_uninterrupted_one(tmp_path, monkeypatch, cache, family):
    monkeypatch.setenv("MUSEGEN_CACHE_DIR", str(cache))
    options = [*TINY[family], "--eval-every", "2"]  # resume points at 2 and 4; stopped at 3, between them
    train.run(arguments(tmp_path / "whole", *options))
    assert train.run(arguments(tmp_path / "parts", *options, "--stop-at", "3")) == 0
    resume_files = sorted(p.name for p in (tmp_path / "parts" / "model.resume").iterdir())
    assert resume_files == ["resume-00000003.safetensors", "resume.json"]  # one pair: step 2's tensors are gone
    assert not (tmp_path / "parts" / "model").exists()
    assert train.run(arguments(tmp_path / "parts", *options, "--resume")) == 0
    whole, parts = (load_checkpoint(tmp_path / d / "model").meta for d in ("whole", "parts"))
    assert whole["sha256"] == parts["sha256"]
    assert whole["training"]["history"] == parts["training"]["history"]


def test_resume_refuses_other_settings_or_a_missing_checkpoint(tmp_path, monkeypatch, cache):
    monkeypatch.setenv("MUSEGEN_CACHE_DIR", str(cache))
    with pytest.raises(SystemExit, match="no resume checkpoint"):
        train.run(arguments(tmp_path, *TINY["lstm"], "--resume"))
    train.run(arguments(tmp_path, *TINY["lstm"], "--stop-at", "2"))
    with pytest.raises(SystemExit, match=r"settings differ .*\['lr'\]"):
        train.run(arguments(tmp_path, *TINY["lstm"], "--resume", "--lr", "0.5"))


def test_cache_only_reads_the_caches_and_names_a_missing_one(tmp_path, monkeypatch, cache):
    corpus = train.cached_corpus(["oneills", "ryans"], 0, cache)
    built = load_corpus(["oneills", "ryans"], max_tunes=30, workers=1, progress=False, cache_dir=cache)
    assert [t.tune_id for t in corpus.tunes] == [t.tune_id for t in built.tunes] and corpus.splits == built.splits
    with pytest.raises(SystemExit, match=r"no cache for collection 'essen' in .*corpus-essen-\*\.npz"):
        train.cached_corpus(["essen"], 0, cache)


@pytest.mark.slow
def test_small_training_run_beats_the_unigram_and_bigram(tmp_path, monkeypatch):
    monkeypatch.setenv("MUSEGEN_CACHE_DIR", str(tmp_path / "cache"))
    parser = argparse.ArgumentParser()
    train.add_arguments(parser)
    options = ["--preset", "lstm-tiny", "--collections", "essen,oneills,ryans", "--max-tunes", "150"]
    options += ["--steps", "300", "--eval-every", "100", "--lr", "0.01", "--batch-size", "32", "--window", "64"]
    assert train.run(parser.parse_args([*options, "--device", "cpu", "--out", str(tmp_path / "model")])) == 0
    meta = load_checkpoint(tmp_path / "model").meta
    assert meta["info"]["commercial_use_cleared"] is False  # Essen is non-commercial
    test_bits = meta["metrics"]["test_nll_bits_per_step"]
    assert (
        test_bits
        < meta["metrics"]["baselines"]["kn_bigram_test_bits"]
        < meta["metrics"]["baselines"]["unigram_test_bits"]
    )
