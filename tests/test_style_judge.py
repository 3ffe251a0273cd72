"""The style judge and style focus: the judge reads melodies whatever their key, saves and loads only through
safetensors + JSON, learns styles apart, stays out of the model picker; style focus keeps the candidate take the judge
finds most in the asked style, and more candidates never make the kept take less typical."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest
import torch

from musegen_core import encoding
from musegen_core.controls import Controls
from musegen_core.errors import CheckpointError
from musegen_core.generate import candidate_seeds, continue_melody, focus_candidates
from musegen_core.models.checkpoint import WEIGHTS, save_checkpoint
from musegen_core.models.lstm import PRESETS as LSTM_PRESETS
from musegen_core.models.lstm import MelodyLSTM
from musegen_core.models.registry import list_models
from musegen_core.models.style_judge import (
    LEAP,
    PRESETS,
    StyleJudge,
    interval_tokens,
    load_judge,
    relative_tokens,
    shipped_judge,
)
from musegen_core.music import Note, Part, Piece, TimeSignature
from musegen_core.training.style_classifier_train import Windows
from musegen_core.training.style_judge_train import fit

STYLES = ("irish", "bach_chorale")


def melody(pitches: list[int], step_length: int = 2) -> np.ndarray:
    """Tokens of notes of `step_length` sixteenths each."""
    tokens = []
    for pitch in pitches:
        tokens += [encoding.NOTE_ON + pitch - encoding.MIN_PITCH] + [encoding.HOLD] * (step_length - 1)
    return np.array(tokens, dtype=np.int64)


def tiny_judge(seed: int = 0) -> StyleJudge:
    torch.manual_seed(seed)
    return StyleJudge(replace(PRESETS["judge-tiny"], styles=STYLES)).eval()


def test_relative_tokens_read_a_transposed_melody_the_same():
    tune = melody([60, 62, 64, 65, 67, 72, 71, 67])
    up_a_fifth = melody([67, 69, 71, 72, 74, 79, 78, 74])
    assert np.array_equal(relative_tokens(tune), relative_tokens(up_a_fifth))
    assert relative_tokens([encoding.REST, encoding.HOLD]).tolist() == [0, 1]  # no notes: nothing to centre
    judge = tiny_judge()
    together = judge.log_posteriors([(tune, 16), (up_a_fifth, 16)])
    assert np.allclose(together[0], together[1]) and np.allclose(np.exp(together).sum(axis=1), 1)


def test_interval_rows_mark_each_note_by_its_leap_from_the_last():
    tune = melody([60, 62, 59, 79, 79], step_length=2)  # up 2, down 3, up 20 (beyond an octave), repeat
    rows = interval_tokens(np.concatenate([[encoding.REST], tune]))
    onsets = [1, 3, 5, 7, 9]
    assert rows[onsets].tolist() == [1, 2 + LEAP + 2, 2 + LEAP - 3, 2 + 2 * LEAP, 2 + LEAP]
    assert not np.delete(rows, onsets).any()  # the rest and the holds: no note starts there
    assert np.array_equal(interval_tokens(melody([67, 69, 66, 86, 86])), interval_tokens(tune))  # any key
    assert interval_tokens([]).tolist() == []


def test_a_judge_saves_and_loads_exactly_and_refuses_changed_weights(tmp_path):
    judge = tiny_judge()
    save_checkpoint(judge, judge.config, tmp_path / "style-judge", "# card\n", {})
    loaded = load_judge(tmp_path / "style-judge")
    tune = [(melody([60, 64, 67, 72]), 16), (melody([55, 57]), 12)]
    assert np.allclose(loaded.log_posteriors(tune), judge.log_posteriors(tune))
    assert loaded.config == judge.config
    (tmp_path / "style-judge" / WEIGHTS).write_bytes(b"not safetensors")
    with pytest.raises(CheckpointError, match="sha256"):
        load_judge(tmp_path / "style-judge")


def test_the_judge_is_not_offered_as_a_generator(tmp_path, monkeypatch):
    judge = tiny_judge()
    save_checkpoint(judge, judge.config, tmp_path / "style-judge", "# card\n", {})
    monkeypatch.setenv("MUSEGEN_MODELS_DIR", str(tmp_path))
    monkeypatch.setenv("MUSEGEN_USER_MODELS_DIR", str(tmp_path / "user"))
    assert list_models() == []
    assert json.loads((tmp_path / "style-judge" / "config.json").read_text())["family"] == "style-judge"


def test_training_tells_two_made_up_styles_apart():
    """Style A walks by step in long notes, style B leaps in short ones (different keys each time)."""
    rng = np.random.default_rng(0)

    def windows(count: int) -> Windows:
        melodies, styles = [], []
        for i in range(count):
            start = int(rng.integers(55, 70))
            if i % 2:
                pitches = (start + np.cumsum(rng.choice([-7, -5, 5, 7], 32))).clip(45, 94)
                melodies.append((melody(pitches.tolist(), 1)[:32], 16))
            else:
                pitches = (start + np.cumsum(rng.choice([-2, -1, 1, 2], 8))).clip(45, 94)
                melodies.append((melody(pitches.tolist(), 4)[:32], 16))
            styles.append(STYLES[i % 2])
        return Windows(melodies, styles, count)

    config = replace(PRESETS["judge-tiny"], styles=STYLES)
    judge, history = fit({"train": windows(200), "valid": windows(40)}, config, epochs=40, seed=0, progress=False)
    assert history[-1]["epoch"] == 40 and max(h["valid_balanced_accuracy"] for h in history) > 0.9
    test = windows(40)
    predicted = judge.log_posteriors(test.melodies).argmax(axis=1)
    assert np.mean([STYLES[p] == s for p, s in zip(predicted, test.styles, strict=True)]) > 0.9


def test_focus_candidates_grow_with_the_style_strength_up_to_the_familys_most():
    strengths = (0, 0.5, 1, 1.5, 2, 2.5, 3, 3.5, 4)
    for family, most in (("lstm", 16), ("transformer", 16), ("vae", 32), ("gan", 64), ("", 16)):
        counts = [focus_candidates(s, family) for s in strengths]
        assert counts == sorted(counts) and counts[0] == counts[4] == 1 and counts[-1] == most  # none up to 2
    assert candidate_seeds(7, 3)[0] == 7 and len(set(candidate_seeds(7, 8))) == 8
    assert all(0 <= seed < 2**31 for seed in candidate_seeds(2**31 - 1, 8))


def tune() -> Piece:
    notes = tuple(Note(p, i * 0.5, 0.5) for i, p in enumerate([60, 62, 64, 65, 67, 65, 64, 62]))
    return Piece((Part("Flute", notes, program=73),), tempo_bpm=100, time_signature=TimeSignature(4, 4))


@pytest.fixture(scope="module")
def styled_lstm() -> MelodyLSTM:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(1)
        return MelodyLSTM(replace(LSTM_PRESETS["lstm-tiny"], styles=STYLES)).eval()


def judged(piece: Piece, style: str, bars: int = 1) -> float:
    tokens = encoding.piece_to_tokens(piece, total_steps=bars * 16).tokens
    judge = shipped_judge()
    return float(judge.log_posteriors([(tokens, 16)])[0, judge.styles.index(style)])


def test_style_focus_keeps_the_candidate_bar_the_judge_prefers(styled_lstm):
    asked = Controls(bars=1, seed=11, style="bach_chorale", style_strength=1.0)
    singles = [continue_melody(styled_lstm, tune(), replace(asked, seed=seed)) for seed in candidate_seeds(11, 4)]
    scores = [judged(take.generated_alone(), "bach_chorale") for take in singles]
    focused = continue_melody(styled_lstm, tune(), asked, candidates=4)
    assert focused.generated == singles[int(np.argmax(scores))].generated
    assert continue_melody(styled_lstm, tune(), asked, candidates=1).generated == singles[0].generated


def test_more_candidates_never_make_the_kept_bar_less_typical(styled_lstm):
    asked = Controls(bars=1, seed=3, style="irish", style_strength=1.0)
    kept = [
        judged(continue_melody(styled_lstm, tune(), asked, candidates=k).generated_alone(), "irish")
        for k in (1, 2, 4, 8)
    ]
    assert kept == sorted(kept) and kept[-1] > kept[0]


def test_focus_over_several_bars_is_more_typical_and_repeatable(styled_lstm):
    """Bar by bar, over many seeds: focused takes are on average more typical of the style to the judge."""
    asked = Controls(bars=4, style="bach_chorale", style_strength=1.0)
    plain = [judged(continue_melody(styled_lstm, tune(), replace(asked, seed=s)).generated_alone(), "bach_chorale", 4)
             for s in range(6)]  # fmt: skip
    focused = [continue_melody(styled_lstm, tune(), replace(asked, seed=s), candidates=6) for s in range(6)]
    scores = [judged(take.generated_alone(), "bach_chorale", 4) for take in focused]
    assert np.mean(scores) > np.mean(plain)
    assert continue_melody(styled_lstm, tune(), replace(asked, seed=0), candidates=6).generated == focused[0].generated
    assert all(take.generated_alone().end_beats <= 16 for take in focused)  # 4 bars of 4/4, no more


def test_without_a_style_there_is_nothing_to_focus_on(styled_lstm):
    plain = continue_melody(styled_lstm, tune(), Controls(bars=2, seed=3, style_strength=1.0))
    assert continue_melody(styled_lstm, tune(), Controls(bars=2, seed=3, style_strength=4.0)).generated == (
        plain.generated
    )
