"""The controls object: validation with clear messages, key finding, the steering table, and that every steering
knob moves what it says in generated music — on tiny models of every family and on the shipped folk LSTM."""

from __future__ import annotations

import json
import math
from dataclasses import replace
from fractions import Fraction

import numpy as np
import pytest
import torch

from musegen_core import encoding
from musegen_core.controls import (
    MAJOR_DEGREES,
    MINOR_DEGREES,
    SCALES,
    Controls,
    estimate_key,
    key_of,
    refused_controls,
    steered_tempo,
    steering_table,
)
from musegen_core.errors import ControlError
from musegen_core.generate import continue_melody
from musegen_core.models.gan import PRESETS as GAN_PRESETS
from musegen_core.models.gan import MelodyGAN
from musegen_core.models.lstm import PRESETS as LSTM_PRESETS
from musegen_core.models.lstm import MelodyLSTM
from musegen_core.models.registry import load_model
from musegen_core.models.transformer import PRESETS as TRANSFORMER_PRESETS
from musegen_core.models.transformer import MelodyTransformer
from musegen_core.models.vae import PRESETS as VAE_PRESETS
from musegen_core.models.vae import MelodyVAE
from musegen_core.music import PITCH_NAMES, Key, Note, Part, Piece, TimeSignature

C_MAJOR_TUNE = [60, 62, 64, 65, 67, 65, 64, 62, 60, 64, 67, 72, 71, 67, 62, 60]
A_MINOR_TUNE = [69, 71, 72, 74, 76, 74, 72, 71, 69, 72, 76, 81, 80, 76, 71, 69]


def prime(pitches: list[int] = C_MAJOR_TUNE, key: Key | None = None) -> Piece:
    notes = tuple(Note(p, i * 0.5, 0.5) for i, p in enumerate(pitches))
    return Piece((Part("Flute", notes, program=73),), tempo_bpm=100, time_signature=TimeSignature(4, 4), key=key)


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"bars": 0}, "bars must be a whole number within 1 and 64 (received 0)"),
        ({"bars": 2.5}, "received 2.5"),
        ({"temperature": 9.0}, "temperature must be a number within 0.05 and 5 (received 9.0)"),
        ({"temperature": math.nan}, "received nan"),
        ({"top_p": 0.0}, "top_p must be above 0"),
        ({"density": 2.0}, "density must be a number within -1 and 1 (received 2.0)"),
        ({"complexity": True}, "received True"),
        ({"low": 70, "high": 72}, "pitch range must span at least 5 semitones"),
        ({"high": 200}, "high must be a whole number within 43 and 96"),
        ({"key": "H"}, "key must be one of"),
        ({"mode": "locrian"}, "mode must be one of"),
        ({"tempo_bpm": 1000.0}, "tempo_bpm must be a number within 20 and 300"),
        ({"mix": 0.5, "style": "irish"}, "a style mix needs both a style and a second style"),
        ({"seed": -1}, "seed must be a whole number"),
        ({"temperature": 10**400}, "(received 1000000000000000000000000000000000000…)"),
        ({"mode": ["major"]}, "mode must be one of"),
        ({"style": 5}, "style must be a style name (received 5)"),
    ],
)
def test_absurd_values_get_one_clear_message(values, message):
    with pytest.raises(ControlError, match=message.replace("(", r"\(").replace(")", r"\)")):
        Controls(**values)


def test_unknown_control_names_and_moods_are_refused():
    with pytest.raises(ControlError, match=r"unknown controls: \['loudness'\]"):
        Controls.from_dict({"loudness": 3})
    with pytest.raises(ControlError, match="mood must be one of"):
        Controls.with_mood("angry")
    with pytest.raises(ControlError, match="unknown controls"):
        continue_melody(MelodyLSTM(LSTM_PRESETS["lstm-tiny"]).eval(), prime(), loudness=3)


def test_numbers_are_stored_as_plain_json_ready_ints_and_floats():
    controls = Controls(scale_pull=Fraction(1, 3), bars=np.int64(4), temperature=1)
    assert (type(controls.scale_pull), type(controls.bars), type(controls.temperature)) == (float, int, float)
    assert Controls.from_dict(json.loads(json.dumps(controls.as_dict()))) == controls
    with pytest.raises(ControlError, match=r"unknown controls: \['1', 'x'\]"):
        Controls.from_dict({1: 0, "x": 0})


def test_moods_set_valence_and_energy_and_round_trip_through_a_dict():
    happy = Controls.with_mood("happy", bars=4)
    assert (happy.valence, happy.energy, happy.bars) == (1.0, 0.5, 4)
    assert Controls.from_dict(happy.as_dict()) == happy
    assert Controls.with_mood("sad").valence < 0 < Controls.with_mood("energetic").energy


def test_key_finding_hears_c_major_and_a_minor():
    assert estimate_key(np.array(C_MAJOR_TUNE)) == Key(0, "major")
    assert estimate_key(np.array(A_MINOR_TUNE) - 1) == Key(8, "minor")  # a semitone lower: G# minor
    assert key_of(prime(key=Key(7, "major"))) == Key(7, "major")  # a written key wins


def test_no_knob_turned_means_no_steering_and_the_same_notes_as_before():
    assert steering_table(Controls(temperature=0.7, top_p=0.9), 16, 4, Key(0)) is None
    model = MelodyLSTM(LSTM_PRESETS["lstm-tiny"]).eval()
    plain = continue_melody(model, prime(), bars=2, seed=3)
    assert continue_melody(model, prime(), Controls(bars=2, seed=3)).generated == plain.generated


def test_the_steering_table_nudges_and_forbids_what_the_controls_say():
    notes = slice(encoding.NOTE_ON, encoding.VOCAB_SIZE)
    dense = steering_table(Controls(density=1.0), 16, 4, Key(0))
    assert (dense[:, notes] > 0).all() and (dense[:, : encoding.NOTE_ON] == 0).all()
    syncopated = steering_table(Controls(complexity=1.0), 16, 4, Key(0))
    assert syncopated[1, encoding.NOTE_ON] > 0 > syncopated[4, encoding.NOTE_ON]  # off the beat up, on it down
    narrow = steering_table(Controls(low=60, high=72), 16, 4, Key(0))
    allowed = torch.isfinite(narrow[0, notes]).nonzero().flatten() + encoding.MIN_PITCH
    assert allowed.tolist() == list(range(60, 73))
    in_d_dorian = steering_table(Controls(key="D", mode="dorian", scale_pull=1.0), 16, 4, Key(0))
    allowed = torch.isfinite(in_d_dorian[0, notes]).nonzero().flatten() + encoding.MIN_PITCH
    assert {int(p - 2) % 12 for p in allowed} == set(SCALES["dorian"])
    half = steering_table(Controls(key="D", mode="dorian", scale_pull=0.5), 16, 4, Key(0))
    assert torch.isfinite(half).all() and half[0, encoding.NOTE_ON + 63 - encoding.MIN_PITCH] < 0  # Eb: outside


def test_every_allowed_range_holds_a_note_of_every_scale():
    for tonic in PITCH_NAMES:
        for mode in SCALES:
            for low in range(encoding.MIN_PITCH, encoding.MAX_PITCH - 4):
                controls = Controls(key=tonic, mode=mode, scale_pull=1.0, low=low, high=low + 5)
                assert torch.isfinite(steering_table(controls, 16, 4, Key(0))[0]).sum() > encoding.NOTE_ON


def test_tempo_is_the_asked_one_or_the_primes_scaled_by_energy():
    assert steered_tempo(Controls(tempo_bpm=140.0), 100) == 140
    assert steered_tempo(Controls(), 100) == 100
    assert steered_tempo(Controls(energy=1.0), 100) > 100 > steered_tempo(Controls(energy=-1.0), 100)
    take = continue_melody(MelodyLSTM(LSTM_PRESETS["lstm-tiny"]).eval(), prime(), bars=2, tempo_bpm=150.0)
    assert take.joined().tempo_bpm == 150 and take.generated.tempo_bpm == 150


# ---------------------------------------------------------------------------------------------------------------
# Generated music obeys the knobs: every family (tiny random models: the steering alone must do it) …

FAMILIES = {
    "lstm": lambda: MelodyLSTM(LSTM_PRESETS["lstm-tiny"]),
    "transformer": lambda: MelodyTransformer(TRANSFORMER_PRESETS["transformer-tiny"]),
    "vae": lambda: MelodyVAE(VAE_PRESETS["vae-tiny"]),
    "gan": lambda: MelodyGAN(GAN_PRESETS["gan-tiny"]),
}


@pytest.fixture(scope="module", params=sorted(FAMILIES))
def tiny_model(request):
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        return FAMILIES[request.param]().eval()


def takes(model, controls: Controls, count: int = 6) -> list[list[Note]]:
    return [
        list(continue_melody(model, prime(), replace(controls, seed=seed)).generated.parts[0].notes)
        for seed in range(count)
    ]


def onsets_per_bar(model, density: float) -> float:
    return float(np.mean([len(notes) for notes in takes(model, Controls(bars=4, density=density))])) / 4


def test_density_orders_notes_per_bar_in_every_family(tiny_model):
    counts = [onsets_per_bar(tiny_model, d) for d in (-1.0, 0.0, 1.0)]
    assert counts[0] < counts[1] < counts[2]


def test_hard_constraints_hold_for_every_note_in_every_family(tiny_model):
    controls = Controls(bars=4, low=62, high=74, key="G", mode="major", scale_pull=1.0)
    notes = [note for take in takes(tiny_model, controls) for note in take]
    assert notes and all(62 <= n.pitch <= 74 and (n.pitch - 7) % 12 in SCALES["major"] for n in notes)


def test_complexity_moves_onsets_off_the_beat_in_every_family(tiny_model):
    def off_beat_share(complexity: float) -> float:
        notes = [n for take in takes(tiny_model, Controls(bars=4, complexity=complexity)) for n in take]
        return float(np.mean([n.start_beats % 1 != 0 for n in notes]))

    assert off_beat_share(-1.0) < off_beat_share(1.0)


# … and the shipped folk LSTM, where the steering has to fight a trained model's habits.


@pytest.fixture(scope="module")
def folk():
    return load_model("lstm-folk")


def test_valence_pulls_the_shipped_model_towards_major_or_minor(folk):
    def majorness(valence: float) -> float:
        notes = [n for take in takes(folk, Controls(bars=4, valence=valence), 8) for n in take]
        degrees = [(n.pitch - 0) % 12 for n in notes]  # the prime is in C
        return float(np.mean([d in MAJOR_DEGREES for d in degrees]) - np.mean([d in MINOR_DEGREES for d in degrees]))

    assert majorness(-1.0) < majorness(0.0) < majorness(1.0)


def test_the_shipped_model_keeps_to_the_asked_key_and_range(folk):
    controls = Controls(bars=4, key="D", mode="minor", scale_pull=1.0, low=60, high=77)
    notes = [n for take in takes(folk, controls) for n in take]
    assert all(60 <= n.pitch <= 77 and (n.pitch - 2) % 12 in SCALES["minor"] for n in notes)


def test_a_style_mix_is_between_its_two_styles(folk):
    def mean_pitch(**values) -> float:
        return float(np.mean([n.pitch for take in takes(folk, Controls(bars=4, **values), 8) for n in take]))

    chorale, mixed = mean_pitch(style="bach_chorale"), mean_pitch(style="bach_chorale", mix_style="irish", mix=0.5)
    irish = mean_pitch(style="irish")
    assert min(chorale, irish) - 1 <= mixed <= max(chorale, irish) + 1


def test_models_without_styles_refuse_only_the_style_controls_and_say_why():
    assert refused_controls("lstm", ("irish", "bach_chorale")) == {}
    assert set(refused_controls("gan", ("irish",))) == {"temperature", "top_p"}  # measured
    assert set(refused_controls("vae", ("irish",))) == {"top_p"}  # measured: under 0.15 bits, not monotonic
    refused = refused_controls("lstm", ())
    assert set(refused) == {"style", "style_mix", "style_strength"} and "without style labels" in refused["style"]


# Style strength is classifier-free guidance: 1 = plain conditioning, 0 = the "any style" model.


def test_guidance_mixes_logits_as_documented():
    from musegen_core.models.sampling import guided

    styled, plain = torch.tensor([2.0, 0.0]), torch.tensor([1.0, 1.0])
    assert torch.equal(guided(styled, plain, 1.0), styled) and torch.equal(guided(styled, plain, 0.0), plain)
    assert torch.equal(guided(styled, plain, 3.0), torch.tensor([4.0, -2.0]))
    assert torch.equal(guided(styled, None, 3.0), styled)


STYLED_FAMILIES = {
    "lstm": lambda: MelodyLSTM(replace(LSTM_PRESETS["lstm-tiny"], styles=("irish", "bach_chorale"))),
    "transformer": lambda: MelodyTransformer(
        replace(TRANSFORMER_PRESETS["transformer-tiny"], styles=("irish", "bach_chorale"))
    ),
    "vae": lambda: MelodyVAE(replace(VAE_PRESETS["vae-tiny"], styles=("irish", "bach_chorale"))),
    "gan": lambda: MelodyGAN(replace(GAN_PRESETS["gan-tiny"], styles=("irish", "bach_chorale"))),
}


@pytest.mark.parametrize("family", sorted(STYLED_FAMILIES))
def test_style_strength_zero_is_any_style_one_is_plain_and_more_differs(family):
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = STYLED_FAMILIES[family]().eval()

    def notes(**values) -> tuple:
        return continue_melody(model, prime(), Controls(bars=2, seed=5, **values)).generated.parts[0].notes

    any_style, plain = notes(), notes(style="irish", style_strength=1.0)
    assert notes(style="irish", style_strength=0.0) == any_style
    if family == "gan":  # no guidance for the GAN (measured: no clearer style), and no focus up to 2
        assert notes(style="irish", style_strength=2.0) == plain
    else:
        assert notes(style="irish", style_strength=4.0) != plain
    assert notes(style_strength=3.0) == any_style  # no style: nothing to lean on
