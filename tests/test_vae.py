"""Melody VAE: checkpoint round trip, the common generation call, variations, interpolation and their controls."""

from __future__ import annotations

import argparse
import json
import math
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from many_takes import OPTIONS, assert_each_take_is_its_seeds, assert_refuses_bad_generators, seeded

from musegen_core import encoding
from musegen_core.errors import CheckpointError, ControlError
from musegen_core.generate import VARIATION_BARS, _latent_windows, continue_melody, interpolate, variations
from musegen_core.models.checkpoint import load_checkpoint, save_checkpoint, write_meta
from musegen_core.models.lstm import PRESETS as LSTM_PRESETS
from musegen_core.models.lstm import MelodyLSTM
from musegen_core.models.style import StyleMix
from musegen_core.models.vae import PRESETS, START, WINDOW, MelodyVAE, VAEConfig, _decoder, slerp
from musegen_core.music import Key, Note, Part, Piece, TimeSignature
from musegen_core.training import card, train
from musegen_core.training.corpus import load_corpus
from musegen_core.training.vae_train import loss_terms

SHIPPED = Path(__file__).resolve().parents[1] / "models" / "vae-folk"


def melody(pitches_and_beats: list[tuple[int, float]], meter=(4, 4)) -> Piece:
    """A one-part piece of consecutive notes (pitch, length in beats) from beat 0."""
    notes, time = [], 0.0
    for pitch, beats in pitches_and_beats:
        notes.append(Note(pitch, time, beats))
        time += beats
    return Piece((Part("Flute", tuple(notes), program=73),), 96, TimeSignature(*meter), Key(7, "major"), "m")


A = melody([(67, 1), (69, 1), (71, 1), (72, 1), (74, 2), (72, 1), (71, 1)])  # two bars of 4/4
B = melody([(62, 0.5), (64, 0.5), (66, 0.5), (67, 0.5), (69, 1), (71, 1), (72, 2), (71, 1), (69, 1)])


def notes_of(piece: Piece) -> list[tuple[int, float, float]]:
    return [(n.pitch, n.start_beats, n.duration_beats) for n in piece.parts[0].notes]


@pytest.fixture(scope="module")
def tiny() -> MelodyVAE:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        return MelodyVAE(replace(PRESETS["vae-tiny"], styles=("irish", "bach_chorale"))).eval()


@pytest.fixture(scope="module")
def fitted() -> MelodyVAE:
    """A small VAE trained for a few hundred steps on melodies A and B only (a few seconds on a CPU)."""
    config = VAEConfig(token_dim=16, position_dim=4, encoder_hidden=32, decoder_hidden=48, latent=8, dropout=0.0)
    tokens = torch.stack([torch.from_numpy(encoding.piece_to_tokens(m, total_steps=WINDOW).tokens) for m in (A, B)])
    positions = torch.from_numpy(encoding.bar_positions(WINDOW, 16))[None].expand(2, -1)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = MelodyVAE(config)
        optimiser = torch.optim.Adam(model.parameters(), lr=1e-2)
        for _ in range(300):
            nll, kl = loss_terms(model, tokens, positions, None)
            loss = (nll + 0.01 * kl).mean()
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
    return model.eval()


def test_checkpoint_round_trip_gives_identical_outputs(tiny, tmp_path):
    save_checkpoint(tiny, tiny.config, tmp_path / "vae", "card", {})
    loaded = load_checkpoint(tmp_path / "vae").model
    assert loaded.family == "vae" and loaded.styles == ("irish", "bach_chorale") and not loaded.has_likelihood
    tokens = torch.randint(0, encoding.VOCAB_SIZE, (3, WINDOW), generator=torch.Generator().manual_seed(1))
    positions = torch.from_numpy(encoding.bar_positions(WINDOW, 12))[None].expand(3, -1)
    with torch.inference_mode():
        assert torch.equal(tiny(tokens, positions, sample=False)[0], loaded(tokens, positions, sample=False)[0])
    assert notes_of(variations(tiny, A, seed=5)[2]) == notes_of(variations(loaded, A, seed=5)[2])


def test_config_refuses_unknown_and_missing_fields():
    data = PRESETS["vae-tiny"].to_dict()
    assert VAEConfig.from_dict(data) == PRESETS["vae-tiny"]
    with pytest.raises(ValueError, match=r"unknown \['extra'\].*missing \['latent'\]"):
        VAEConfig.from_dict({k: v for k, v in data.items() if k != "latent"} | {"extra": 1})


def test_continue_noise_round_trips_through_the_config_and_a_checkpoint(tiny, tmp_path):
    config = replace(tiny.config, continue_noise=0.35)
    assert config.to_dict()["continue_noise"] == 0.35
    assert VAEConfig.from_dict(json.loads(json.dumps(config.to_dict()))) == config
    model = MelodyVAE(config)
    model.load_state_dict(tiny.state_dict())
    save_checkpoint(model, config, tmp_path / "vae", "card", {})
    assert json.loads((tmp_path / "vae" / "config.json").read_text())["model"]["continue_noise"] == 0.35
    assert load_checkpoint(tmp_path / "vae").model.config.continue_noise == 0.35


def test_a_config_written_before_continue_noise_loads_with_the_old_value(tiny, tmp_path):
    data = {k: v for k, v in PRESETS["vae-tiny"].to_dict().items() if k != "continue_noise"}
    assert VAEConfig.from_dict(data).continue_noise == 0.8  # the constant generate used before it was a field
    save_checkpoint(tiny, tiny.config, tmp_path / "vae", "card", {})
    path = tmp_path / "vae" / "config.json"
    meta = json.loads(path.read_text())
    del meta["model"]["continue_noise"]
    path.write_text(json.dumps(meta))
    assert load_checkpoint(tmp_path / "vae").model.config == tiny.config


@pytest.mark.parametrize("bad", [-0.1, 11.0, math.nan])
def test_continue_noise_out_of_range_is_refused(bad):
    with pytest.raises(ValueError, match="continue_noise"):
        VAEConfig(continue_noise=bad)
    with pytest.raises(ValueError, match="continue_noise"):
        VAEConfig.from_dict(PRESETS["vae-tiny"].to_dict() | {"continue_noise": bad})


def test_continue_noise_changes_generation(tiny):
    context = torch.tensor([encoding.NOTE_ON + 20, encoding.HOLD, encoding.NOTE_ON + 24, encoding.HOLD] * 8)
    positions = torch.from_numpy(encoding.bar_positions(len(context) + 2 * WINDOW, 16))

    def take(noise: float, seed: int) -> torch.Tensor:
        model = MelodyVAE(replace(tiny.config, continue_noise=noise)).eval()
        model.load_state_dict(tiny.state_dict())
        return model.generate(context, positions, 2 * WINDOW, generator=torch.Generator().manual_seed(seed), style=0)

    for seed in range(3):
        assert torch.equal(take(0.8, seed), tiny.generate(context, positions, 2 * WINDOW, style=0,
                                                          generator=torch.Generator().manual_seed(seed)))  # fmt: skip
    assert any(not torch.equal(take(0.0, seed), take(1.5, seed)) for seed in range(3))
    assert torch.equal(take(1.5, 4), take(1.5, 4))


def test_a_chosen_continue_noise_is_written_without_touching_the_weights(tiny, tmp_path):
    folder = tmp_path / "vae"
    save_checkpoint(tiny, tiny.config, folder, "card", {})
    weights = (folder / "model.safetensors").read_bytes()
    meta = json.loads((folder / "config.json").read_text())
    meta = meta | {"model": meta["model"] | {"continue_noise": 0.6}}
    write_meta(folder, meta, "new card\n")
    assert (folder / "model.safetensors").read_bytes() == weights and (folder / "README.md").read_text() == "new card\n"
    assert load_checkpoint(folder).model.config.continue_noise == 0.6
    with pytest.raises(CheckpointError, match="sha256"):
        write_meta(folder, meta | {"sha256": "0" * 64}, "card")
    with pytest.raises(CheckpointError, match="continue_noise"):
        write_meta(folder, meta | {"model": meta["model"] | {"continue_noise": -1}}, "card")
    assert load_checkpoint(folder).model.config.continue_noise == 0.6  # refused writes changed nothing


def test_the_card_says_how_continue_noise_was_chosen():
    if not (SHIPPED / "config.json").is_file():
        pytest.skip("models/vae-folk is missing")
    meta = json.loads((SHIPPED / "config.json").read_text())
    noise = meta["model"].get("continue_noise", 0.8)
    text = card.card_text("vae-folk", meta)
    assert f"`continue_noise` = **{noise}**" in text or "not yet chosen" in text
    chosen = meta | {"model": meta["model"] | {"continue_noise": 0.6}}
    chosen["metrics"] = meta["metrics"] | {"continue_noise_choice": {
        "split": "valid", "excerpts": 200, "draws": 5, "settings": [0.0, 0.6, 1.5], "criterion": "mean overlap",
        "script": "bench/vae_noise.py", "results": "bench/results/vae_noise.json"}}  # fmt: skip
    text = card.card_text("vae-folk", chosen)
    assert "`continue_noise` = **0.6**" in text and "0, 0.6, 1.5" in text and "**valid** split" in text


@pytest.mark.parametrize("steps", [1, 16, 45])
def test_generate_gives_the_requested_steps_deterministically(tiny, steps):
    context = torch.tensor([encoding.NOTE_ON + 20, encoding.HOLD] * 10)
    positions = torch.from_numpy(encoding.bar_positions(20 + steps, 16))
    take = tiny.generate(context, positions, steps, generator=torch.Generator().manual_seed(3), style=1)
    again = tiny.generate(context, positions, steps, generator=torch.Generator().manual_seed(3), style=1)
    assert take.shape == (steps,) and torch.equal(take, again)
    assert int(take.min()) >= 0 and int(take.max()) < encoding.VOCAB_SIZE


def test_continue_melody_fills_the_asked_bars(tiny):
    result = continue_melody(tiny, A, bars=3, seed=2, style="irish")
    assert result.start_beats == 8.0
    assert all(8.0 <= n.start_beats < 20.0 and n.end_beats <= 20.0 for n in result.generated.parts[0].notes)


def test_variations_are_seeded_and_two_bars_long(tiny):
    takes = variations(tiny, A, n=3, distance=1.0, seed=7, style="bach_chorale")
    assert len(takes) == 3
    assert [notes_of(t) for t in takes] == [notes_of(t) for t in variations(tiny, A, n=3, distance=1.0, seed=7,
                                                                          style="bach_chorale")]  # fmt: skip
    assert [notes_of(t) for t in takes] != [notes_of(t) for t in variations(tiny, A, n=3, distance=1.0, seed=8,
                                                                          style="bach_chorale")]  # fmt: skip
    for take in takes:
        assert take.time_signature == A.time_signature and take.tempo_bpm == 96 and take.pickup_beats == 0
        assert take.end_beats <= 8.0


@pytest.mark.parametrize(("bars", "meter", "windows", "kept"), [(6, (4, 4), 3, 32), (12, (4, 4), 4, 32),
                                                                 (3, (3, 4), 2, 24), (1, (2, 4), 1, 16)])  # fmt: skip
def test_variations_cover_up_to_eight_bars_in_two_bar_windows(tiny, bars, meter, windows, kept):
    beats = meter[0] * 4 / meter[1]
    prime = melody([(67, beats / 2), (71, beats / 2)] * bars, meter=meter)
    found = _latent_windows(tiny, prime, VARIATION_BARS)
    assert len(found) == windows and all(chunk == kept for _, _, chunk in found)
    assert all(len(t) == len(p) == WINDOW for t, p, _ in found)
    assert all(take.end_beats <= windows * kept / 4 for take in variations(tiny, prime, n=2, seed=1))


def test_interpolations_are_deterministic_and_of_the_asked_count(tiny):
    points = interpolate(tiny, A, B, steps=4, temperature=1.0, seed=3)
    assert len(points) == 4 and all(p.end_beats <= 8.0 for p in points)
    assert [notes_of(p) for p in points] == [notes_of(p) for p in interpolate(tiny, A, B, steps=4, temperature=1.0,
                                                                                seed=3)]  # fmt: skip


def test_fitted_model_reconstructs_and_interpolation_ends_at_both_melodies(fitted):
    assert notes_of(variations(fitted, A, distance=0.0, n=1)[0]) == notes_of(A)
    points = interpolate(fitted, A, B, steps=5)
    assert notes_of(points[0]) == notes_of(A)
    assert notes_of(points[-1]) == notes_of(B)


def test_slerp_keeps_the_ends_and_the_norm_of_equal_length_vectors():
    a, b = torch.tensor([3.0, 0.0]), torch.tensor([0.0, 3.0])
    assert torch.allclose(slerp(a, b, 0.0), a) and torch.allclose(slerp(a, b, 1.0), b)
    assert torch.isclose(slerp(a, b, 0.5).norm(), torch.tensor(3.0))
    assert torch.allclose(slerp(a, 2 * a, 0.5), 1.5 * a)  # parallel: linear


@pytest.mark.parametrize(
    ("controls", "received"),
    [
        ({"n": 0}, "received 0"),
        ({"n": 17}, "received 17"),
        ({"n": 2.5}, "received 2.5"),
        ({"distance": -0.1}, "received -0.1"),
        ({"distance": 3.5}, "received 3.5"),
        ({"seed": -1}, "received -1"),
        ({"temperature": 9.0}, "received 9.0"),
        ({"style": "klezmer"}, "received 'klezmer'"),
        ({"part_index": 3}, "received 3"),
    ],
)
def test_bad_variation_controls_raise_control_error(tiny, controls, received):
    with pytest.raises(ControlError, match=received):
        variations(tiny, A, **controls)


@pytest.mark.parametrize(("controls", "received"), [({"steps": 1}, "received 1"), ({"steps": 17}, "received 17")])
def test_bad_interpolation_controls_raise_control_error(tiny, controls, received):
    with pytest.raises(ControlError, match=received):
        interpolate(tiny, A, B, **controls)


def test_latent_modes_refuse_other_families_long_bars_and_empty_melodies(tiny):
    lstm = MelodyLSTM(LSTM_PRESETS["lstm-tiny"]).eval()
    with pytest.raises(ControlError, match="received a lstm model"):
        variations(lstm, A)
    with pytest.raises(ControlError, match="received 9/4"):
        interpolate(tiny, melody([(67, 9)], meter=(9, 4)), B)
    empty = A.with_parts((Part("Flute", ()),))
    with pytest.raises(ControlError, match="no notes"):
        interpolate(tiny, A, empty)


def test_shipped_model_gives_n_two_bar_variations():
    if not (SHIPPED / "model.safetensors").is_file():
        pytest.skip("models/vae-folk is missing: train it with `musegen train --model vae`")
    model = load_checkpoint(SHIPPED).model
    assert model.family == "vae" and not model.has_likelihood
    takes = variations(model, A, n=3, distance=0.5, seed=0)
    assert len(takes) == 3 and all(4.0 < t.end_beats <= 8.0 and t.parts[0].notes for t in takes)
    assert notes_of(variations(model, A, n=1, distance=0.0)[0]) == notes_of(A)  # reconstructs a plain 2-bar tune


TRAIN_RUN = ["--model", "vae", "--preset", "vae-tiny", "--collections", "oneills,ryans", "--steps", "6"]
TRAIN_RUN += ["--batch-size", "8", "--eval-every", "2", "--max-tunes", "12", "--device", "cpu", "--workers", "1"]


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    """A corpus cache of 12 O'Neill + 12 Ryan tunes (music21), shared by the training runs below."""
    folder = tmp_path_factory.mktemp("cache")
    load_corpus(["oneills", "ryans"], max_tunes=12, workers=1, progress=False, cache_dir=folder)
    return folder


def run_training(folder: Path, *extra: str) -> int:
    parser = argparse.ArgumentParser()
    train.add_arguments(parser)
    return train.run(parser.parse_args([*TRAIN_RUN, "--out", str(folder / "model"), *extra]))


def test_tiny_training_run_writes_a_card_and_resumes_bit_for_bit(tmp_path, monkeypatch, cache):
    monkeypatch.setenv("MUSEGEN_CACHE_DIR", str(cache))
    assert run_training(tmp_path / "whole") == 0
    assert run_training(tmp_path / "parts", "--stop-at", "3") == 0 and not (tmp_path / "parts" / "model").exists()
    assert run_training(tmp_path / "parts", "--resume") == 0
    whole, parts = (load_checkpoint(tmp_path / d / "model") for d in ("whole", "parts"))
    assert whole.meta["sha256"] == parts.meta["sha256"] and whole.meta["family"] == "vae"
    assert whole.model.styles == ("irish", "american_fiddle")
    metrics = whole.meta["metrics"]
    assert 0 <= metrics["test_recon_token_accuracy"] <= 1 and metrics["test_elbo_bits_per_step"] > 0
    card = (tmp_path / "whole" / "model" / "README.md").read_text()
    assert "reconstruction accuracy per onset" in card and whole.meta["training"]["command"] in card
    assert [h["step"] for h in whole.meta["training"]["history"]] == [2, 4, 6]


@pytest.mark.parametrize("layers", [1, 2])
def test_fast_decoder_steps_match_the_teacher_forced_decoder(layers):
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = MelodyVAE(replace(PRESETS["vae-tiny"], decoder_layers=layers, styles=("irish",))).eval()
        z = torch.randn(3, model.config.latent)  # three windows decoded together
    positions = torch.from_numpy(encoding.bar_positions(WINDOW, 12, 3))
    tokens = torch.stack([model.sample_window(row, positions, generator=torch.Generator().manual_seed(1)) for row in z])
    previous = torch.cat([torch.full((3, 1), START), tokens[:, :-1]], dim=1)
    with torch.inference_mode():
        logits, _ = model.decode(z, previous, positions.expand(3, -1), torch.tensor([0, 0, 0]))
        stepper = _decoder(model, z, torch.tensor([0]))
        stepped = torch.stack([stepper.step(previous[:, t], int(p)) for t, p in enumerate(positions)], dim=1)
    assert torch.allclose(stepped, logits, atol=1e-5)


def test_style_strength_pulls_the_latent_towards_the_asked_style_centroid(tiny):
    centroids = ((1.0,) * tiny.config.latent, (-1.0,) * tiny.config.latent)
    model = MelodyVAE(replace(tiny.config, style_centroids=centroids)).eval()
    z = torch.zeros(tiny.config.latent)
    assert torch.equal(model.style_pull(z, 0, 1.0), z) and torch.equal(model.style_pull(z, None, 4.0), z)
    assert torch.allclose(model.style_pull(z, 0, 4.0), torch.full_like(z, 0.5))  # half-way at the strongest
    assert torch.allclose(model.style_pull(z, 1, 2.5), torch.full_like(z, -0.25))
    assert torch.allclose(model.style_pull(z, StyleMix(0, 1, 0.25), 4.0), torch.full_like(z, 0.25))
    assert torch.equal(tiny.style_pull(z, 0, 4.0), z)  # no measured centroids: nothing to pull towards


# --- several takes at once ------------------------------------------------------------------------------------


@OPTIONS
def test_each_take_of_generate_many_is_the_single_take_with_its_seed(tiny, options):
    centroids = tuple(tuple(float(x) for x in torch.linspace(-1, 1, tiny.config.latent) * sign) for sign in (1, -1))
    model = MelodyVAE(replace(tiny.config, style_centroids=centroids)).eval()
    model.load_state_dict(tiny.state_dict())
    with torch.no_grad():  # an untrained model is near-uniform: make z and the steps matter
        model.head.weight.mul_(10)
    context = torch.tensor([encoding.NOTE_ON + 20, encoding.HOLD, encoding.NOTE_ON + 24] * 4)  # shorter than WINDOW
    positions = torch.from_numpy(encoding.bar_positions(len(context) + 45, 16))  # two windows: 32 + 13 steps
    assert_each_take_is_its_seeds(model, context, positions, 45, options)


def test_generate_many_returns_takes_by_steps_and_refuses_a_bad_generators_list(tiny):
    context = torch.tensor([encoding.NOTE_ON + 20, encoding.HOLD])
    positions = torch.from_numpy(encoding.bar_positions(2 + 8, 16))
    assert_refuses_bad_generators(tiny, context, positions)
    assert tiny.generate_many(context, positions[:2], 0, generators=seeded(1, 2)).shape == (2, 0)
