"""Fine-tuning from feedback: the take layout, DPO + reward-weighted likelihood on tiny models of every likelihood
family, the validation gate, lineage, promotion, resume after interruption and a 2-process DDP run."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from musegen_core import encoding
from musegen_core.cli import main as cli_main
from musegen_core.errors import MusegenError
from musegen_core.formats.midi import piece_to_midi
from musegen_core.generate import continue_melody
from musegen_core.models import checkpoint, gan, lstm, registry, transformer, vae
from musegen_core.music import Note, Part, Piece, TimeSignature
from musegen_core.training import finetune, gate, preferences
from musegen_core.training.corpus import load_corpus

REPO = Path(__file__).resolve().parents[1]
FAMILIES = {
    "lstm": (lstm.MelodyLSTM, lstm.PRESETS["lstm-tiny"]),
    "transformer": (transformer.MelodyTransformer, transformer.PRESETS["transformer-tiny"]),
    "vae": (vae.MelodyVAE, vae.PRESETS["vae-tiny"]),
    "gan": (gan.MelodyGAN, gan.PRESETS["gan-tiny"]),
}
INFO = {"version": "1", "description": "tiny", "trained_on": ["O'Neill's: public domain"],
        "commercial_use_cleared": True}  # fmt: skip
FAST = {"device": "cpu", "batch_size": 8, "lr": 3e-3, "threads": 1, "corpus_weight": 0.0}  # no corpus anchor


def tiny(family: str, styles: tuple[str, ...] = ()) -> torch.nn.Module:
    module, config = FAMILIES[family]
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        return module(replace(config, styles=styles)).eval()


def melody(notes: list[tuple[int, float, float]], pickup: float = 0.0, meter=(4, 4)) -> Piece:
    part = Part("Flute", tuple(Note(p, s, d) for p, s, d in notes), program=73)
    return Piece((part,), time_signature=TimeSignature(*meter), pickup_beats=pickup)


def synthetic(records: int = 40, seed: int = 0) -> preferences.FeedbackData:
    """Raters who like high continuations: pairs prefer the take in 74–86 over the one in 50–62 (A and B sides
    alternate), ratings give a high take 5 stars and a low one 1 star. Primes are random 2-bar melodies in 60–72."""
    rng = random.Random(seed)

    def take(high: bool) -> bytes:
        low = 74 if high else 50
        return piece_to_midi(melody([(rng.randint(low, low + 12), 8.0 + i, 1.0) for i in range(8)]))

    pairs, ratings = [], []
    for i in range(records):
        prime = piece_to_midi(melody([(rng.randint(60, 72), float(i), 1.0) for i in range(8)]))
        high, low = take(True), take(False)
        a, b, choice = (high, low, "a") if i % 2 else (low, high, "b")
        pairs.append(preferences.TakePair(prime, a, b, choice, controls_a={"bars": 2}, controls_b={"bars": 2}))
        liked = i % 3 != 0
        ratings.append(preferences.RatedTake(prime, high if liked else low, 5 if liked else 1, controls={"bars": 2}))
    return preferences.FeedbackData(
        tuple(ratings), tuple(pairs), preferences.records_sha256(ratings, pairs), "synthetic"
    )


@pytest.fixture
def dirs(tmp_path, monkeypatch):
    """Empty shipped and user model folders (the environment's own are never touched)."""
    shipped, user = tmp_path / "shipped", tmp_path / "user"
    shipped.mkdir()
    monkeypatch.setenv("MUSEGEN_MODELS_DIR", str(shipped))
    monkeypatch.setenv("MUSEGEN_USER_MODELS_DIR", str(user))
    return shipped, user


def ship(shipped: Path, family: str, name: str = "tiny", training: dict | None = None) -> torch.nn.Module:
    model = tiny(family)
    checkpoint.save_checkpoint(model, model.config, shipped / name, "# tiny\n", {}, info=INFO, training=training)
    return model


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    """A corpus cache of 30 O'Neill + 30 Ryan tunes (music21), for the gate's held-out test NLL."""
    folder = tmp_path_factory.mktemp("cache")
    load_corpus(["oneills", "ryans"], max_tunes=30, workers=1, progress=False, cache_dir=folder)
    return folder


GATE = {"collections": "oneills,ryans", "cache_only": True, "max_tunes": 30}  # the corpus for the gate and anchor
GATE_FLAGS = ["--collections", "oneills,ryans", "--cache-only", "--max-tunes", "30"]


def margins(model: torch.nn.Module, parent: torch.nn.Module, data) -> dict:
    examples = finetune.build_examples(parent, data, 0.2, 0)
    return gate.preference_metrics(model, examples.heldout, torch.device("cpu"))


# --- layout: exactly how continue_melody lays out a prime and its take --------------------------------------------


@pytest.mark.parametrize(
    ("notes", "pickup", "meter", "known"),
    [
        ([(62, 0, 1), (64, 1, 1), (67, 2, 2)], 0.0, (4, 4), {}),  # no pickup
        ([(62, 0, 1), (64, 1, 1), (67, 2, 2)], 1.0, (4, 4), {"pickup_beats": 1.0}),  # a pickup the record names
        ([(62, 0, 1), (64, 1, 1), (67, 2, 2.25)], 1.0, (4, 4), {}),  # a pickup only the take's first note reveals
        ([(62, 0, 0.5), (64, 0.5, 1), (67, 1.5, 1)], 0.5, (3, 4), {"start_beats": 3.5}),  # the take's bar line
    ],
)
def test_a_stored_take_is_laid_out_as_continue_melody_generated_it(notes, pickup, meter, known, monkeypatch):
    model = tiny("lstm")
    prime = melody(notes, pickup, meter)
    captured = {}
    original = model.generate_many

    def spy(context, positions, steps, **kwargs):
        captured.update(context=context.clone(), positions=positions.clone())
        out = original(context, positions, steps, **kwargs)
        captured["tokens"] = out[0]
        return out

    monkeypatch.setattr(model, "generate_many", spy)
    take = continue_melody(model, prime, bars=3, seed=4)
    assert captured["tokens"][0] >= encoding.NOTE_ON, "this test needs a take that starts with a note"
    controls = {"bars": 3} | known
    laid = preferences.layout(model, piece_to_midi(take.prime), piece_to_midi(take.generated), controls)
    context = captured["context"].numpy()
    assert laid.start == len(context) and np.array_equal(laid.tokens[: laid.start], context)
    assert np.array_equal(laid.positions, captured["positions"].numpy())
    expected = encoding.piece_to_tokens(
        melody([(n.pitch, n.start_beats, n.duration_beats) for n in encoding.tokens_to_notes(captured["tokens"])]),
        total_steps=len(captured["tokens"]),
    ).tokens  # the sampled tokens as MIDI keeps them (a HOLD after a rest reads back as a rest)
    assert np.array_equal(laid.tokens[laid.start :], expected)


def test_take_scores_are_the_models_next_step_log_probabilities():
    model = tiny("transformer")
    prime, take = synthetic(2).pairs[0].prime_midi, synthetic(2).pairs[0].a_midi
    laid = preferences.layout(model, prime, take, {"bars": 2})
    scored = preferences.scored_take(model, laid)
    [bits] = preferences.mean_logliks(model, [scored], torch.device("cpu"))
    with torch.no_grad():
        tokens, positions = torch.from_numpy(laid.tokens), torch.from_numpy(laid.positions)
        logits, _ = model(tokens[None, :-1], positions[None, 1:])
        log_probs = torch.log_softmax(logits[0], dim=-1)
        steps = range(laid.start - 1, len(tokens) - 1)
        expected = sum(float(log_probs[t, tokens[t + 1]]) for t in steps) / len(steps) / np.log(2)
    assert bits == pytest.approx(expected, abs=1e-5) and scored.steps == 32


def test_vae_takes_are_scored_window_by_window_from_the_previous_windows_latent_mean():
    model = tiny("vae")
    record = synthetic(2).ratings[0]
    laid = preferences.layout(model, record.prime_midi, record.take_midi, {"bars": 3})  # 48 steps: 32 + 16
    scored = preferences.scored_take(model, laid)
    assert [len(row.targets) for row in scored.rows] == [32, 16] and scored.steps == 48
    for k, row in enumerate(scored.rows):
        begin = laid.start + 32 * k
        mu, _ = model.latent_of(torch.from_numpy(laid.tokens[begin - 32 : begin]),
                                torch.from_numpy(laid.positions[begin - 32 : begin]))  # fmt: skip
        np.testing.assert_allclose(row.z, mu.numpy(), atol=1e-6)
        assert row.inputs[0] == vae.START and np.array_equal(row.targets, laid.tokens[begin : begin + len(row.targets)])


def test_a_take_in_another_models_style_is_scored_in_any_style():
    model = tiny("lstm", styles=("irish", "bach_chorale"))
    record = synthetic(2).ratings[0]
    for controls, row in (({"style": "irish"}, 0), ({"style": "german_folk"}, 2), ({}, 2)):
        laid = preferences.layout(model, record.prime_midi, record.take_midi, controls | {"bars": 2})
        assert preferences.scored_take(model, laid).style.argmax() == row
    mixed = preferences.layout(model, record.prime_midi, record.take_midi,
                               {"style": "irish", "mix_style": "bach_chorale", "mix": 0.25})  # fmt: skip
    np.testing.assert_allclose(preferences.scored_take(model, mixed).style, [0.75, 0.25, 0.0])


# --- fine-tuning moves a tiny model toward a synthetic preference -----------------------------------------------


@pytest.mark.parametrize("family", ["lstm", "transformer", "vae"])
def test_finetuning_moves_every_likelihood_family_toward_the_raters_preference(dirs, family):
    shipped, _ = dirs
    parent = ship(shipped, family)
    data = synthetic()
    started = time.perf_counter()
    result = finetune.finetune("tiny", data, steps=30, gate=False, **FAST)
    seconds = time.perf_counter() - started
    child = checkpoint.load_checkpoint(result.folder).model
    before, after = margins(parent, parent, data), margins(child, parent, data)
    # held-out pairs (never trained on): the preferred high take became much likelier than the low one
    assert after["pair_margin_bits"] > before["pair_margin_bits"] + 0.2
    assert after["pair_accuracy"] == 1.0 and after["star_covariance"] > before["star_covariance"] + 0.2
    assert result.name == "tiny-v2" and not result.promoted and result.gate is None
    assert seconds < 30
    if family == "vae":  # only the decoder side moved
        frozen = [k for k in parent.state_dict() if k.startswith(finetune.FROZEN_VAE)]
        assert frozen and all(torch.equal(parent.state_dict()[k], child.state_dict()[k]) for k in frozen)
        assert not torch.equal(parent.state_dict()["head.weight"], child.state_dict()["head.weight"])


def test_the_gan_is_refused_with_a_clear_message(dirs):
    ship(dirs[0], "gan")
    with pytest.raises(MusegenError, match="gan model: it defines no likelihood of a take"):
        finetune.finetune("tiny", synthetic(4), steps=2, gate=False, **FAST)


def test_records_that_cannot_be_laid_out_are_skipped_and_counted():
    data = synthetic(6)
    broken = replace(data.pairs[0], a_midi=b"not midi")
    early = replace(data.ratings[0], take_midi=data.ratings[0].prime_midi)  # "take" inside the prime
    tie = replace(data.pairs[1], choice="tie")
    data = replace(data, pairs=(broken, tie, *data.pairs[2:]), ratings=(early, *data.ratings[1:]))
    examples = finetune.build_examples(tiny("lstm"), data, 0.0, 0)
    assert examples.counts["skipped"] == 2 and examples.counts["ties"] == 1
    assert examples.counts["train_pairs"] == 4 and examples.counts["train_ratings"] == 5


def test_ratings_get_centred_clipped_advantages():
    data = synthetic(12)
    examples = finetune.build_examples(tiny("lstm"), data, 0.0, 0)
    mean = examples.counts["train_mean_stars"]
    assert mean == pytest.approx(np.mean([r.stars for r in data.ratings]))
    advantages = sorted({round(e.advantage, 6) for e in examples.train if e.kind == "rating"})
    assert mean == pytest.approx(11 / 3)  # 8 × 5 stars, 4 × 1 star
    assert advantages == [-1.0, round((5 - mean) / 2, 6)]  # (1 − 11/3) / 2 = −1.33 is clipped to −1


# --- the gate -----------------------------------------------------------------------------------------------------


def test_gate_accepts_a_small_nll_rise_with_a_better_preference_score():
    assert gate.decide(1.00, 1.049, 0.10, 0.11) == (True, [])


def test_gate_rejects_an_nll_rise_over_five_percent():
    passed, reasons = gate.decide(1.00, 1.06, 0.10, 0.50)
    assert not passed and len(reasons) == 1 and "NLL rose +6.0%" in reasons[0]


@pytest.mark.parametrize("after", [0.10, 0.09])
def test_gate_rejects_a_preference_score_that_did_not_improve(after):
    passed, reasons = gate.decide(1.00, 0.90, 0.10, after)
    assert not passed and reasons == [f"the held-out preference score did not improve (+0.1000 → {after:+.4f})"]


def test_gate_rejects_without_held_out_feedback_and_names_both_failures():
    passed, reasons = gate.decide(1.0, 2.0, None, None)
    assert not passed and len(reasons) == 2 and "no held-out feedback" in reasons[1]


def test_preference_score_ignores_a_uniform_shift_of_likelihood():
    takes = tuple(preferences.ScoredTake((), None, 1) for _ in range(4))
    held = gate.PreferenceSet(takes, pairs=((0, 1, 1.0),), ratings=((2, 5, 1.0), (3, 1, 1.0)))
    scores = np.array([-1.0, -2.0, -1.5, -3.0])
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(preferences, "mean_logliks", lambda *_: scores)
        first = gate.preference_metrics(None, held, torch.device("cpu"))
        patch.setattr(preferences, "mean_logliks", lambda *_: scores - 7.0)
        shifted = gate.preference_metrics(None, held, torch.device("cpu"))
    # stars 5 and 1 centre to +2 and −2: covariance (2 · −1.5 − 2 · −3) / 2 = 1.5; score (1 + 2 · 1.5) / 3
    assert first["pair_margin_bits"] == 1.0 and first["star_covariance"] == pytest.approx(1.5)
    assert first["score"] == pytest.approx(4 / 3) and shifted["score"] == pytest.approx(first["score"])


def test_a_passing_fine_tune_records_its_lineage_and_is_promoted(dirs, cache, monkeypatch, tmp_path):
    monkeypatch.setenv("MUSEGEN_CACHE_DIR", str(cache))
    shipped, user = dirs
    parent = ship(shipped, "lstm")
    (shipped / "promoted.json").write_text(json.dumps({"default": "tiny", "families": {"lstm": "tiny"}}))
    folder = preferences.write_feedback(synthetic(), tmp_path / "feedback")
    seen = []
    options = FAST | GATE | {"corpus_weight": 1.0, "progress_file": str(tmp_path / "progress.json")}
    result = finetune.finetune("lstm", folder, steps=30, on_progress=seen.append, **options)
    assert result.gate.passed and result.promoted and result.folder == user / "tiny-v2"
    meta = json.loads((user / "tiny-v2" / "config.json").read_text())
    lineage = meta["lineage"]
    assert lineage["base"] == "tiny" and meta["info"]["version"] == "2" and meta["info"]["base"] == "tiny"
    assert lineage["parent"] == {
        "name": "tiny",
        "version": "1",
        "sha256": checkpoint.read_meta(shipped / "tiny")["sha256"],
    }
    data = preferences.read_feedback(folder)
    assert lineage["dataset"]["sha256"] == data.sha256 and lineage["dataset"]["path"] == str(folder)
    assert (lineage["dataset"]["ratings"], lineage["dataset"]["pairs"], lineage["dataset"]["ties"]) == (40, 40, 0)
    assert lineage["finetune"]["beta"] == 0.1 and lineage["finetune"]["steps"] == 30
    assert lineage["gate"]["passed"] and lineage["gate"]["promoted"] and lineage["gate"]["nll"]["split"] == "test"
    assert lineage["metrics"]["preference_score"] > lineage["metrics"]["parent_preference_score"]
    assert abs(lineage["metrics"]["heldout_nll_change"]) < 0.05 + 1e-9 or lineage["metrics"]["heldout_nll_change"] < 0
    assert meta["info"]["commercial_use_cleared"] and meta["training"]["processes"] == 1
    card = (user / "tiny-v2" / "README.md").read_text()
    assert "tiny@1" in card and "**Passed**; promoted." in card and meta["training"]["command"] in card
    # the registry sees the new version and its promotion at once, with no cache to clear
    info = registry.model_info("tiny-v2")
    assert info.source == "user" and info.parent == "tiny@1" and info.gate_passed is True
    assert [i.name for i in registry.list_models()] == ["tiny-v2", "tiny"]  # the new default first
    assert registry.resolve_model_name("lstm") == "tiny-v2" and registry.default_model_name() == "tiny-v2"
    assert [i.name for i in registry.versions("tiny")] == ["tiny", "tiny-v2"] and registry.next_version("tiny") == 3
    child = registry.load_model("lstm")
    assert any(not torch.equal(a, b) for a, b in zip(parent.state_dict().values(), child.state_dict().values(),
                                                        strict=True))  # fmt: skip
    # progress for the app's background job: a callback and a JSON file, ending with the verdict
    assert [s["phase"] for s in seen][:1] == ["training"] and seen[-1]["phase"] == "done"
    assert finetune.read_progress(tmp_path / "progress.json")["name"] == "tiny-v2"
    # no resume point is left behind by a finished run
    assert not [p for p in user.iterdir() if p.name.endswith(".resume")]
    # rollback brings the shipped model back; a second fine-tune of the new version gets the next number
    registry.rollback("lstm", by="test")
    assert registry.resolve_model_name("lstm") == "tiny" and registry.default_model_name() == "tiny"
    again = finetune.finetune("tiny-v2", folder, steps=2, gate=False, **FAST)
    assert again.name == "tiny-v3" and registry.model_info("tiny-v3").parent == "tiny-v2@2"


def test_a_failing_fine_tune_is_kept_unpromoted_with_its_reasons(dirs, cache, monkeypatch):
    monkeypatch.setenv("MUSEGEN_CACHE_DIR", str(cache))
    ship(dirs[0], "lstm")
    # NLL must fall by half to pass (it cannot), and nothing is held out to measure the preference on
    result = finetune.finetune("tiny", synthetic(), steps=4, holdout=0.0, nll_tolerance=-0.5, **FAST, **GATE)
    assert not result.gate.passed and not result.promoted
    reasons = registry.model_info(result.name).lineage["gate"]["reasons"]
    assert len(reasons) == 2 and "NLL" in reasons[0] and "no held-out feedback" in reasons[1]
    assert registry.resolve_model_name("lstm") == "lstm"  # nothing promoted: no family entry at all
    with pytest.raises(MusegenError, match=r"did not pass its validation gate .*NLL"):
        registry.promote(result.name)
    registry.promote(result.name, force=True, by="test")
    assert registry.resolve_model_name("lstm") == result.name


def test_gate_can_be_rerun_on_a_version_and_promotes_it(dirs, cache, monkeypatch, tmp_path):
    monkeypatch.setenv("MUSEGEN_CACHE_DIR", str(cache))
    ship(dirs[0], "lstm")
    folder = preferences.write_feedback(synthetic(), tmp_path / "feedback")
    result = finetune.finetune("tiny", folder, steps=30, gate=False, **FAST)
    with pytest.raises(MusegenError, match="the gate was not run"):
        registry.promote(result.name)
    verdict = finetune.gate(result.name, device="cpu", promote=True, max_test_tunes=3, **GATE)
    assert verdict.passed and verdict.promoted and verdict.nll["tunes"] == 3
    assert registry.model_info(result.name).gate_passed and registry.resolve_model_name("lstm") == result.name


# --- resume after an interruption ---------------------------------------------------------------------------------


def test_a_run_stopped_and_resumed_ends_with_the_weights_of_an_uninterrupted_one(dirs, tmp_path, cache, monkeypatch):
    monkeypatch.setenv("MUSEGEN_CACHE_DIR", str(cache))
    ship(dirs[0], "transformer")
    data = preferences.write_feedback(synthetic(), tmp_path / "feedback")
    options = {"steps": 8, "save_every": 3, "gate": False, **FAST, **GATE, "corpus_weight": 1.0, "corpus_windows": 4}
    whole = finetune.finetune("tiny", data, out=str(tmp_path / "whole"), **options)
    stopped = finetune.finetune("tiny", data, out=str(tmp_path / "parts"), stop_at=4, **options)
    assert stopped.name is None and not (tmp_path / "parts").exists()
    resume_files = sorted(p.name for p in (tmp_path / "parts.resume").iterdir())
    assert resume_files == ["resume-00000004.safetensors", "resume.json"]
    with pytest.raises(SystemExit, match=r"settings differ .*\['beta'\]"):
        finetune.finetune("tiny", data, out=str(tmp_path / "parts"), resume=True, **options | {"beta": 0.5})
    parts = finetune.finetune("tiny", data, out=str(tmp_path / "parts"), resume=True, **options)
    first, second = (checkpoint.read_meta(r.folder) for r in (whole, parts))
    assert first["sha256"] == second["sha256"]
    assert first["training"]["history"] == second["training"]["history"]
    assert not (tmp_path / "parts.resume").exists()


def _command(*options: str) -> list[str]:
    return [sys.executable, "-m", "musegen_core.training.finetune", "--device", "cpu", "--threads", "1", *options]


def test_a_run_killed_mid_way_resumes_to_the_same_weights(dirs, tmp_path):
    ship(dirs[0], "lstm")
    data = preferences.write_feedback(synthetic(), tmp_path / "feedback")
    common = ["--model", "tiny", "--dataset", str(data), "--steps", "200", "--save-every", "10", "--batch-size",
              "8", "--lr", "3e-3", "--no-gate", "--corpus-weight", "0"]  # fmt: skip
    env = os.environ | {"OMP_WAIT_POLICY": "PASSIVE"}
    killed = subprocess.Popen(_command(*common, "--out", str(tmp_path / "parts")), env=env, cwd=tmp_path,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    state = tmp_path / "parts.resume" / "resume.json"
    deadline = time.monotonic() + 120
    while not state.exists() and killed.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    os.kill(killed.pid, signal.SIGKILL)
    killed.wait()
    assert killed.returncode == -signal.SIGKILL and not (tmp_path / "parts").exists(), "killed before the end"
    for out, extra in (("parts", ["--resume"]), ("whole", [])):
        subprocess.run(_command(*common, "--out", str(tmp_path / out), *extra), env=env, cwd=tmp_path, check=True,
                       capture_output=True)  # fmt: skip
    whole, parts = (checkpoint.read_meta(tmp_path / d) for d in ("whole", "parts"))
    assert whole["sha256"] == parts["sha256"] and parts["training"]["steps_done"] == 200


# --- DDP and devices ----------------------------------------------------------------------------------------------


# What each torchrun process runs: the fine-tune's own entry point, then a count of gloo's threads still alive.
FINETUNE_THEN_COUNT_THREADS = """
import os, sys
from musegen_core.training.finetune import main
code = main(sys.argv[1:])
names = [open(f"/proc/self/task/{task}/comm").read().strip() for task in os.listdir("/proc/self/task")]
print(f"exit {code}, gloo threads left {sum(name.startswith('gloo') for name in names)}")
sys.exit(code)
"""


def test_two_cpu_processes_under_torchrun_train_like_one(dirs, tmp_path, cache, monkeypatch):
    monkeypatch.setenv("MUSEGEN_CACHE_DIR", str(cache))  # the corpus anchor's windows are sharded too
    ship(dirs[0], "lstm")
    data = preferences.write_feedback(synthetic(), tmp_path / "feedback")
    common = ["--model", "tiny", "--dataset", str(data), "--steps", "6", "--batch-size", "8", "--lr", "3e-3",
              "--no-gate", "--device", "cpu", "--corpus-windows", "6", *GATE_FLAGS]  # fmt: skip
    launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "--no-python"]
    run = subprocess.run([*launcher, sys.executable, "-c", FINETUNE_THEN_COUNT_THREADS, *common, "--out",
                          str(tmp_path / "ddp")], env=os.environ | {"OMP_WAIT_POLICY": "PASSIVE"}, cwd=tmp_path,
                         capture_output=True, text=True, timeout=240)  # fmt: skip
    assert run.returncode == 0, run.stderr[-3000:]
    assert run.stdout.count("wrote ") == 1  # only rank 0 writes
    # each process left the group with gloo's threads joined: none left running into interpreter shutdown
    assert run.stdout.count("exit 0, gloo threads left 0") == 2, run.stdout[-2000:]
    single = finetune.finetune("tiny", data, steps=6, gate=False, out=str(tmp_path / "one"), corpus_windows=6,
                               **FAST | {"corpus_weight": 1.0}, **GATE)  # fmt: skip
    ddp = checkpoint.load_checkpoint(tmp_path / "ddp")
    assert ddp.meta["training"]["processes"] == 2 and ddp.meta["training"]["backend"] == "gloo"
    one = checkpoint.load_checkpoint(single.folder).model.state_dict()
    for key, value in ddp.model.state_dict().items():
        torch.testing.assert_close(value, one[key], atol=1e-5, rtol=1e-4, msg=key)
    assert all("corpus_kl" in h for h in ddp.meta["training"]["history"])
    assert [h["loss"] for h in ddp.meta["training"]["history"]] == pytest.approx(
        [h["loss"] for h in checkpoint.read_meta(single.folder)["training"]["history"]], abs=1e-5
    )


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device: the GPU path runs where one is present")
def test_finetuning_runs_on_cuda(dirs):
    ship(dirs[0], "transformer")
    result = finetune.finetune("tiny", synthetic(), steps=5, gate=False, **FAST | {"device": "cuda"})
    assert checkpoint.read_meta(result.folder)["training"]["device"].startswith("cuda")


@pytest.mark.skipif(torch.cuda.is_available(), reason="CUDA is present")
def test_asking_for_cuda_without_it_says_so(dirs):
    ship(dirs[0], "lstm")
    with pytest.raises(SystemExit, match="no CUDA device is available"):
        finetune.finetune("tiny", synthetic(4), steps=2, gate=False, **FAST | {"device": "cuda"})


# --- CLI and the export's dataset ---------------------------------------------------------------------------------


def test_cli_finetunes_lists_promotes_and_rolls_back(dirs, tmp_path, capsys):
    ship(dirs[0], "lstm")
    data = preferences.write_feedback(synthetic(), tmp_path / "feedback")
    assert cli_main(["finetune", "--model", "tiny", "--dataset", str(data), "--steps", "3", "--no-gate",
                     "--device", "cpu", "--batch-size", "8", "--corpus-weight", "0"]) == 0  # fmt: skip
    assert cli_main(["models", "promote", "tiny-v2"]) == 1  # never gated: refused, one line
    assert "did not pass its validation gate (the gate was not run)" in capsys.readouterr().err
    assert cli_main(["models", "promote", "tiny-v2", "--force"]) == 0
    capsys.readouterr()
    assert cli_main(["models", "list", "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    row = next(r for r in listed["models"] if r["name"] == "tiny-v2")
    assert row == {"name": "tiny-v2", "family": "lstm", "version": "2", "source": "user", "parent": "tiny@1",
                   "gate": "—", "promoted": True, "default": True}  # fmt: skip
    assert cli_main(["models", "rollback", "lstm"]) == 0 and registry.resolve_model_name("lstm") == "lstm"
    assert cli_main(["models", "rollback", "lstm"]) == 1
    assert "nothing to roll back" in capsys.readouterr().err
    assert cli_main(["models", "delete", "tiny-v2"]) == 0 and not (dirs[1] / "tiny-v2").exists()
    assert cli_main(["finetune", "--model", "nope", "--dataset", str(data)]) == 1


def test_the_feedback_exports_dataset_objects_are_adapted():
    dataset = pytest.importorskip("musegen_core.feedback.dataset")
    data = synthetic(2)
    pair, rating = data.pairs[0], data.ratings[0]
    take = dataset.DatasetTake
    exported = dataset.FeedbackDataset(
        path=Path("x"), manifest={}, content_sha256="abc", pieces={},
        ratings=(dataset.RatingRecord(1, 4, 0.5, rating.prime_midi, rating.take_midi, "tiny", "1", 3, {"bars": 2},
                                      None, (), "rater-1", "", "p", "t", None),),
        pairs=(dataset.PairRecord(2, "b", 0.25, pair.prime_midi, take(pair.a_midi, "a", "m", "1", 0, {"bars": 2}),
                                  take(pair.b_midi, "b", "m", "2", 0, {"style": "irish"}), (), "rater-2", "p", None),),
    )  # fmt: skip
    adapted = preferences.from_export(exported, "x")
    assert adapted.sha256 == "abc" and adapted.ratings[0].weight == 0.5 and adapted.ratings[0].stars == 4
    assert adapted.pairs[0].choice == "b" and adapted.pairs[0].models == ("m@1", "m@2")
    assert adapted.pairs[0].controls_b == {"style": "irish"} and adapted.pairs[0].b_midi == pair.b_midi
