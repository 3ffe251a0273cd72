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
from musegen_core.training import train
from musegen_core.training.corpus import Tune


def tune(tokens: list[int], bar_steps: int = 12, offset_steps: int = 8) -> Tune:
    return Tune("essen", "german_folk", "x#0", "t", "3/4", "", None, bar_steps, offset_steps, "", np.array(tokens))


def test_windows_align_inputs_positions_and_targets():
    song = tune(list(range(2, 42)))  # 40 distinct onsets: any window shows where it starts
    batch = train.window_batch([song], np.random.default_rng(0), size=4, window=16, transpose=0)
    assert batch.inputs.shape == batch.positions.shape == batch.targets.shape == (4, 16)
    assert torch.equal(batch.targets[:, :-1], batch.inputs[:, 1:])
    start = batch.inputs[:, 0] - 2  # step index of each window's first input
    expected = (start[:, None] + 1 + torch.arange(16) + 8) % 12  # targets are one step on
    assert torch.equal(batch.positions, expected)


def test_short_tunes_are_padded_and_ignored_by_the_loss():
    batch = train.window_batch([tune([19, 1, 1, 0, 21])], np.random.default_rng(0), size=2, window=8, transpose=0)
    assert batch.targets[0].tolist() == [1, 1, 0, 21] + [train.IGNORE] * 4
    assert batch.inputs.min() >= 0


@pytest.mark.parametrize("shift", [-5, -1, 3, 5])
def test_transposition_moves_onsets_only_and_stays_in_range(shift):
    tokens = np.array([0, encoding.NOTE_ON, 1, encoding.VOCAB_SIZE - 3, 1, 0])
    moved = train._transpose(tokens, shift)
    assert moved[[0, 2, 4, 5]].tolist() == [0, 1, 1, 0]
    assert moved[[1, 3]].min() >= encoding.NOTE_ON and moved.max() < encoding.VOCAB_SIZE
    assert moved[3] - moved[1] == tokens[3] - tokens[1]  # intervals kept, the shift reduced to what fits


def test_lr_warms_up_then_decays_to_a_tenth():
    factors = [train._lr_factor(step, 10, 100) for step in range(101)]
    assert factors[0] == pytest.approx(0.1) and factors[9] == pytest.approx(1.0)
    assert factors[10] == pytest.approx(1.0) and factors[100] == pytest.approx(0.1)
    assert all(a >= b for a, b in itertools.pairwise(factors[10:]))


def arguments(tmp_path, *extra: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    train.add_arguments(parser)
    return parser.parse_args(
        ["--preset", "lstm-tiny", "--device", "cpu", "--workers", "1", "--out", str(tmp_path / "model"), *extra]
    )


TINY_RUN = ["--collections", "oneills", "--max-tunes", "40", "--steps", "6", "--eval-every", "3"]
TINY_RUN += ["--batch-size", "8", "--window", "32", "--valid-windows", "8"]


def test_tiny_training_run_writes_a_loadable_checkpoint(tmp_path, monkeypatch):
    monkeypatch.setenv("MUSEGEN_CACHE_DIR", str(tmp_path / "cache"))
    assert train.run(arguments(tmp_path, *TINY_RUN)) == 0
    loaded = load_checkpoint(tmp_path / "model")
    meta = loaded.meta
    assert meta["training"]["steps_done"] == 6 and meta["training"]["device"] == "cpu"
    assert meta["info"]["commercial_use_cleared"] is True  # O'Neill's only: public domain
    assert [h["step"] for h in meta["training"]["history"]] == [3, 6]
    assert 0 < meta["metrics"]["test_nll_bits_per_step"] < 10
    assert "--max-tunes 40" in meta["training"]["command"]
    card = (tmp_path / "model" / "README.md").read_text()
    assert "public domain" in card and "Kneser–Ney" in card and meta["training"]["command"] in card


def test_training_is_deterministic(tmp_path, monkeypatch):
    monkeypatch.setenv("MUSEGEN_CACHE_DIR", str(tmp_path / "cache"))
    train.run(arguments(tmp_path / "a", *TINY_RUN))
    train.run(arguments(tmp_path / "b", *TINY_RUN))
    first, second = (json.loads((tmp_path / d / "model" / "config.json").read_text()) for d in ("a", "b"))
    assert first["sha256"] == second["sha256"]


@pytest.mark.slow
def test_small_training_run_beats_the_unigram_and_bigram(tmp_path, monkeypatch):
    monkeypatch.setenv("MUSEGEN_CACHE_DIR", str(tmp_path / "cache"))
    options = ["--max-tunes", "150", "--steps", "300", "--eval-every", "100", "--lr", "0.01"]
    assert train.run(arguments(tmp_path, *options, "--batch-size", "32", "--window", "64", "--workers", "2")) == 0
    meta = load_checkpoint(tmp_path / "model").meta
    assert meta["info"]["commercial_use_cleared"] is False  # Essen is non-commercial
    test_bits = meta["metrics"]["test_nll_bits_per_step"]
    assert (
        test_bits
        < meta["metrics"]["baselines"]["kn_bigram_test_bits"]
        < meta["metrics"]["baselines"]["unigram_test_bits"]
    )
