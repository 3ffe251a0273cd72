"""The harmonizer: harmonize keeps the melody bit for bit as the soprano (in range or not, on the grid or not), infill
touches nothing outside the chosen bars, checkpoints round-trip through safetensors + JSON and refuse changed
weights, training lowers the loss, and the framewise NLL and its baseline give the numbers worked out by hand."""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pytest
import torch

from musegen_core.errors import CheckpointError, ControlError
from musegen_core.evaluation import harmonizer_eval
from musegen_core.evaluation.harmonizer_eval import Ordering, VoiceBigram, evaluate_harmonizer, model_frame_lls
from musegen_core.models import harmonizer
from musegen_core.models.checkpoint import WEIGHTS
from musegen_core.models.harmonizer import (
    PRESETS,
    VOICES,
    Harmonizer,
    gibbs,
    harmonize,
    infill,
    load_harmonizer,
    orderless_nll,
    random_known,
    save_harmonizer,
    to_classes,
)
from musegen_core.models.registry import list_models
from musegen_core.music import Key, Note, Part, Piece, TimeSignature

CONFIG = PRESETS["harmonizer-tiny"]


def tiny(seed: int = 0) -> Harmonizer:
    torch.manual_seed(seed)
    return Harmonizer(CONFIG).eval()


def melody(notes: list[tuple[int, float, float]], **fields) -> Piece:
    return Piece((Part("Flute", tuple(Note(p, s, d, 70 + i % 20) for i, (p, s, d) in enumerate(notes)), 73),), **fields)


def chorale(bars: int = 4) -> Piece:
    """A hand-made four-part piece in 4/4 with a one-beat pickup, held notes and a note across bar lines 2|3."""
    soprano = [Note(67, 0, 1)] + [Note(72 - (i % 5), 1 + i, 1) for i in range(bars * 4)]
    alto = [Note(64, 0, 1)] + [Note(64 + (i % 3), 1 + 2 * i, 2) for i in range(bars * 2)]
    tenor = [Note(60, 0, 1.5), Note(55, 1.5, 6.5), Note(57, 8, 2.5), Note(59, 10.5, 6.5)]  # 60 and 57 cross bar lines
    bass = [Note(48, 0, 1)] + [Note(43 + (i % 4), 1 + 4 * i, 4) for i in range(bars)]
    parts = [Part(name, tuple(notes), 52) for name, notes in zip(VOICES, (soprano, alto, tenor, bass), strict=True)]
    return Piece(tuple(reversed(parts)), 90.0, TimeSignature(4, 4), Key(0), "test", pickup_beats=1.0)


def test_harmonize_keeps_the_melody_exactly_and_adds_three_voices():
    tune = melody([(67, 0, 1), (69, 1, 1), (71, 2, 2), (72, 4, 0.5), (71, 4.5, 0.5), (69, 5, 3)], tempo_bpm=80.0)
    result = harmonize(tiny(), tune, seed=1, steps=4)
    assert [p.name for p in result.parts] == list(VOICES)
    assert result.parts[0].notes == tune.parts[0].notes
    assert all(a is b for a, b in zip(result.parts[0].notes, tune.parts[0].notes, strict=True))
    assert (result.tempo_bpm, result.time_signature, result.title) == (tune.tempo_bpm, tune.time_signature, "")
    for part in result.parts[1:]:
        assert part.is_monophonic() and all(n.end_beats <= 8 + 1e-9 for n in part.notes)
    assert harmonize(tiny(), tune, seed=1, steps=4) == result  # a seed reproduces


def test_a_melody_out_of_range_is_moved_by_octaves_for_the_model_only(monkeypatch):
    seen = {}

    def spy(model, pianoroll, fixed_mask, steps, seed, temperature):
        seen["soprano"] = harmonizer.to_midi(pianoroll[0], model.config)
        return gibbs(model, pianoroll, fixed_mask, steps, seed, temperature)

    monkeypatch.setattr(harmonizer, "gibbs", spy)
    low = melody([(43, 0, 1), (45, 1, 1), (47, 2, 1), (48, 3, 1), (50, 4, 4)])  # two octaves below the soprano
    result = harmonize(tiny(), low, steps=2)
    assert result.parts[0].notes == low.parts[0].notes
    assert seen["soprano"][:4].tolist() == [67] * 4 and seen["soprano"][-1] == 74  # moved up 24 for the model
    lower = [n.pitch for part in result.parts[1:] for n in part.notes]
    assert all(0 <= p <= 127 for p in lower) and max(lower, default=0) <= 81 - 24  # and back down after


def test_odd_durations_and_a_second_part_are_kept_exactly():
    triplets = [(72, i / 3, 1 / 3) for i in range(6)] + [(74, 2.1, 0.65), (76, 2.75, 1.3), (71, 4.05, 2.95)]
    tune = Piece(
        (Part("Bass", (Note(40, 0, 8),)), melody(triplets).parts[0]),
        time_signature=TimeSignature(6, 8),
        pickup_beats=0.5,
    )
    result = harmonize(tiny(), tune, part_index=1, steps=3, seed=5)
    assert result.parts[0].notes == tune.parts[1].notes
    assert result.pickup_beats == 0.5 and result.time_signature == TimeSignature(6, 8)
    with pytest.raises(ControlError):
        harmonize(tiny(), tune, part_index=2)


def test_infill_leaves_everything_outside_the_bars_bit_identical():
    piece = chorale()
    start, end = piece.bar_lines_beats()[1], piece.bar_lines_beats()[3]  # bars 2–3: beats 1..9
    result = infill(tiny(), piece, 2, 3, seed=2, steps=4)
    assert (result.tempo_bpm, result.key, result.pickup_beats, result.title) == (90.0, Key(0), 1.0, "test")
    for before, after in zip(piece.parts, result.parts, strict=True):
        assert (before.name, before.program) == (after.name, after.program)
        outside = [n for n in before.notes if not (n.start_beats >= start and n.end_beats <= end)]
        after_ids = {id(n) for n in after.notes}
        assert all(id(n) in after_ids for n in outside)  # the very same Note objects
        new = [n for n in after.notes if id(n) not in {id(m) for m in outside}]
        assert all(start - 1e-9 <= n.start_beats and n.end_beats <= end + 1e-9 for n in new)
        assert after.is_monophonic()
    tenor = result.parts[1]
    assert Note(57, 8, 2.5) in tenor.notes and Note(60, 0, 1.5) in tenor.notes  # notes across the boundaries stay
    assert Note(55, 1.5, 6.5) not in tenor.notes or len(tenor.notes) == 4
    others = [n for n in tenor.notes if n not in (Note(60, 0, 1.5), Note(57, 8, 2.5), Note(59, 10.5, 6.5))]
    assert all(n.start_beats >= 1.5 and n.end_beats <= 8 for n in others)
    with pytest.raises(ControlError):
        infill(tiny(), piece, 3, 2)
    with pytest.raises(ControlError):
        infill(tiny(), piece.with_parts(piece.parts[:3]), 1, 1)


def test_gibbs_keeps_fixed_cells_and_reproduces_with_a_seed():
    rng = np.random.default_rng(0)
    roll = rng.integers(0, CONFIG.classes, size=(4, 24))
    fixed = rng.random((4, 24)) < 0.5
    model = tiny()
    first = gibbs(model, roll, fixed, steps=5, seed=7)
    assert (first[fixed] == roll[fixed]).all() and first.shape == roll.shape
    assert (gibbs(model, roll, fixed, steps=5, seed=7) == first).all()
    assert not (gibbs(model, roll, fixed, steps=5, seed=8) == first).all()


def test_a_harmonizer_saves_and_loads_exactly_refuses_changed_weights_and_stays_out_of_the_picker(
    tmp_path, monkeypatch
):
    model = tiny(3)
    for module in model.modules():  # non-trivial batch-norm statistics, so that they must round-trip too
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_mean.normal_()
    folder = save_harmonizer(model, tmp_path / "harmonizer-bach", "# card\n", {"x": 1}, {"steps": 0})
    loaded = load_harmonizer(folder)
    classes = torch.randint(0, CONFIG.classes, (2, 4, 16))
    known = torch.rand(2, 4, 16) < 0.5
    with torch.no_grad():
        assert torch.equal(loaded(classes, known), model(classes, known))
    assert loaded.config == model.config and not loaded.training
    monkeypatch.setenv("MUSEGEN_MODELS_DIR", str(tmp_path))
    assert list_models() == []
    (folder / WEIGHTS).write_bytes((folder / WEIGHTS).read_bytes()[:-8] + b"\0" * 8)
    with pytest.raises(CheckpointError, match="sha256"):
        load_harmonizer(folder)


def test_training_steps_lower_the_orderless_loss_on_a_fixed_batch():
    torch.manual_seed(0)
    model = Harmonizer(CONFIG)
    line = np.array([[67, 67, 69, 71, 72, 72, 71, 69] * 2, [64] * 16, [60, 59] * 8, [48] * 8 + [43] * 8]).T
    classes = torch.from_numpy(to_classes(line, CONFIG).T.copy())[None].repeat(4, 1, 1)
    known = random_known(4, 16, torch.Generator().manual_seed(1))
    optimiser = torch.optim.Adam(model.parameters(), lr=0.02)
    losses = []
    for _ in range(25):
        loss = orderless_nll(model(classes, known), classes, known).mean()
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        losses.append(float(loss.detach()))
    assert losses[-1] < 0.5 * losses[0]


def test_a_uniform_model_scores_four_log_classes_per_frame():
    model = tiny()
    torch.nn.init.zeros_(model.head.weight)
    torch.nn.init.zeros_(model.head.bias)
    with torch.no_grad():
        logits = model(torch.zeros(1, 4, 5, dtype=torch.int64), torch.zeros(1, 4, 5, dtype=torch.bool))
    nll = orderless_nll(logits, torch.zeros(1, 4, 5, dtype=torch.int64), torch.zeros(1, 4, 5, dtype=torch.bool))
    assert float(nll) == pytest.approx(4 * math.log(CONFIG.classes))
    rng = np.random.default_rng(0)
    corpus = {name: [rng.integers(48, 70, size=(n, 4)) for n in (12, 30)] for name in ("train", "valid", "test")}
    result = evaluate_harmonizer(model, "test", chorales=corpus, orderings=3)
    assert result["jsb_test_nll"] == pytest.approx(4 * math.log(47), abs=1e-4)
    assert result["single_ordering_nll"] == pytest.approx(4 * math.log(47), abs=1e-4)
    assert result["frames_scored"] == result["frames_total"] == 42


def test_windowed_scoring_equals_scoring_the_whole_chorale():
    model = tiny(4)
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_mean.normal_()
    rng = np.random.default_rng(1)
    grid = rng.integers(0, CONFIG.classes, size=(4, 20))
    ordering = Ordering(np.argsort(rng.permutation(20)), np.stack([rng.permutation(4) for _ in range(20)]))
    frames = np.array([0, 3, 9, 19])
    windowed = model_frame_lls(model, grid, frames, ordering, chunk=3)
    for value, t in zip(windowed, frames, strict=True):
        known = torch.from_numpy(np.broadcast_to(ordering.rank < ordering.rank[t], (4, 20)).copy())[None]
        total = 0.0
        for v in ordering.voices[t]:
            with torch.no_grad():
                logp = torch.log_softmax(model(torch.from_numpy(grid)[None], known).double(), -1)
            total += float(logp[0, v, t, grid[v, t]])
            known[0, v, t] = True
        assert value == pytest.approx(total, abs=1e-6)
    assert model.time_radius == 4 and 2 * model.time_radius + 1 < 20  # the window really is smaller


def test_the_bigram_baseline_gives_the_hand_computed_likelihood():
    line = to_classes(np.array([60, 60, 62, 62]), CONFIG)  # classes 24, 24, 26, 26
    train = [np.stack([line] * 4)]
    model = VoiceBigram.fit(train, CONFIG.classes, alpha=1.0)
    # unigram: 60 and 62 twice each → (2 + 1) / (4 + 47); from 60: 60 once, 62 once → (1 + 1) / (2 + 47)
    test = np.stack([to_classes(np.array([60, 62]), CONFIG)] * 4)
    expected = 4 * -(math.log(3 / 51) + math.log(2 / 49))
    assert model.joint_nll(test) == pytest.approx(expected)
    # any one ordering's frame log-likelihoods add up to the joint (the chain rule), on a longer chorale too
    rng = np.random.default_rng(2)
    grid = np.stack([to_classes(rng.choice([60, 62, 64], size=9), CONFIG) for _ in range(4)])
    for _ in range(3):
        ordering = Ordering(np.argsort(rng.permutation(9)), np.stack([rng.permutation(4) for _ in range(9)]))
        assert -model.frame_lls(grid, np.arange(9), ordering).sum() == pytest.approx(model.joint_nll(grid))


def test_the_report_names_the_published_number_and_the_baseline(monkeypatch):
    model = tiny()
    rng = np.random.default_rng(3)
    corpus = {name: [rng.integers(55, 65, size=(16, 4))] for name in ("train", "valid", "test")}
    result = evaluate_harmonizer(model, chorales=corpus, orderings=2, max_frames=5)
    assert result["frames_scored"] == 5 and result["coconet_published_nll"] == harmonizer_eval.COCONET_PUBLISHED_NLL
    assert {"jsb_test_nll", "baseline_nll", "units", "orderings", "seconds"} <= set(result)
    assert result["baseline_joint_nll_all_frames"] > 0 and result["baseline_alpha"] in harmonizer_eval.ALPHAS


def test_a_bigger_config_is_refused_by_a_smaller_checkpoint(tmp_path):
    save_harmonizer(tiny(), tmp_path / "h", "# card\n", {}, {})
    config = (tmp_path / "h" / "config.json").read_text().replace('"channels": 8', '"channels": 9')
    (tmp_path / "h" / "config.json").write_text(config)
    with pytest.raises(CheckpointError, match="wrong shape"):
        load_harmonizer(tmp_path / "h")
    assert replace(CONFIG, channels=9).classes == 47
