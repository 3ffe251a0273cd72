"""Melody continuation: controls, bar alignment across meters and pickups, seeding, and the shipped model."""

from __future__ import annotations

import math
from collections import Counter
from pathlib import Path

import pytest
import torch

from musegen_core import encoding
from musegen_core.errors import ControlError
from musegen_core.generate import Continuation, continue_melody
from musegen_core.models.checkpoint import load_checkpoint
from musegen_core.models.lstm import PRESETS, LSTMConfig, MelodyLSTM
from musegen_core.music import Key, Note, Part, Piece, TimeSignature

SHIPPED = Path(__file__).resolve().parents[1] / "models" / "lstm-folk"


def melody(pitches_and_beats: list[tuple[int, float]], meter=(4, 4), pickup_beats=0.0, start=0.0) -> Piece:
    """A one-part piece of consecutive notes (pitch, length in beats) from `start`."""
    notes, time = [], start
    for pitch, beats in pitches_and_beats:
        notes.append(Note(pitch, time, beats))
        time += beats
    return Piece(
        (Part("Flute", tuple(notes), program=73),),
        tempo_bpm=96,
        time_signature=TimeSignature(*meter),
        key=Key(7, "major"),
        title="prime",
        pickup_beats=pickup_beats,
    )


# (prime, first bar line after its last note, beats per bar)
PRIMES = {
    "4/4 ends mid-bar": (melody([(67, 1), (69, 1), (71, 2), (72, 1), (71, 1), (69, 2), (67, 2)]), 12.0, 4.0),
    "3/4 with pickup": (melody([(62, 1), (67, 2), (71, 1), (69, 1.5)], meter=(3, 4), pickup_beats=1), 7.0, 3.0),
    "6/8 ends on a bar line": (melody([(67, 1.5), (71, 0.5), (74, 1), (72, 1.5), (71, 1.5)], meter=(6, 8)), 6.0, 3.0),
}


class Spy:
    """Wraps a model and records what `continue_melody` asks of it."""

    family = "spy"

    def __init__(self, model: MelodyLSTM) -> None:
        self.model, self.calls, self.styles = model, [], model.styles

    def generate_many(self, context, positions, steps, **controls):
        self.calls.append((context, positions, steps))
        return self.model.generate_many(context, positions, steps, **controls)


@pytest.fixture(scope="module")
def tiny() -> MelodyLSTM:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        return MelodyLSTM(PRESETS["lstm-tiny"]).eval()


@pytest.fixture(scope="module")
def shipped() -> MelodyLSTM:
    if not (SHIPPED / "model.safetensors").is_file():
        pytest.skip("models/lstm-folk is missing: train it with `python -m musegen_core.training.train`")
    return load_checkpoint(SHIPPED).model


def pitches(result: Continuation) -> list[int]:
    return [n.pitch for n in result.generated.parts[0].notes]


@pytest.mark.parametrize("name", sorted(PRIMES))
@pytest.mark.parametrize("bars", [1, 4])
def test_model_is_asked_for_whole_bars_starting_on_a_downbeat(tiny, name, bars):
    prime, start_beats, bar_beats = PRIMES[name]
    spy = Spy(tiny)
    result = continue_melody(spy, prime, bars=bars, seed=3)
    [(context, positions, steps)] = spy.calls
    bar_steps = round(bar_beats * encoding.STEPS_PER_BEAT)
    assert steps == bars * bar_steps
    assert len(positions) == len(context) + steps
    assert positions[len(context)] == 0  # the first generated step is a downbeat
    assert len(context) == round(start_beats * encoding.STEPS_PER_BEAT)  # the whole prime, padded to its bar line
    notes = result.generated.parts[0].notes
    assert all(start_beats <= n.start_beats and n.end_beats <= start_beats + bars * bar_beats + 1e-9 for n in notes)


@pytest.mark.parametrize("name", sorted(PRIMES))
def test_generated_piece_keeps_the_primes_settings(tiny, name):
    prime, *_ = PRIMES[name]
    result = continue_melody(tiny, prime, bars=2)
    assert result.prime == prime
    generated = result.generated
    assert (generated.tempo_bpm, generated.time_signature, generated.key) == (96, prime.time_signature, Key(7))
    assert generated.pickup_beats == prime.pickup_beats
    assert (generated.parts[0].name, generated.parts[0].program) == ("Flute", 73)


def test_joined_holds_prime_then_continuation(tiny):
    prime, _, _ = PRIMES["4/4 ends mid-bar"]
    result = continue_melody(tiny, prime, bars=2, seed=1)
    [part] = result.joined().parts
    assert part.notes == prime.parts[0].notes + result.generated.parts[0].notes
    assert result.joined().time_signature == prime.time_signature


@pytest.mark.parametrize("name", sorted(PRIMES))
def test_generated_alone_starts_on_a_downbeat_at_zero(tiny, name):
    prime, start_beats, _ = PRIMES[name]
    result = continue_melody(tiny, prime, bars=2, seed=4)
    alone = result.generated_alone()
    assert result.start_beats == start_beats
    assert alone.pickup_beats == 0  # the generated bars are whole bars: bar lines at 0, 1 bar, 2 bars
    shifted_back = [(n.pitch, n.start_beats + start_beats, n.duration_beats) for n in alone.parts[0].notes]
    assert shifted_back == [(n.pitch, n.start_beats, n.duration_beats) for n in result.generated.parts[0].notes]


def test_context_is_at_most_sixteen_bars(tiny):
    long_prime = melody([(60 + i % 12, 1.0) for i in range(4 * 40)])  # 40 bars of 4/4
    spy = Spy(tiny)
    continue_melody(spy, long_prime, bars=1)
    context, positions, _ = spy.calls[0]
    assert len(context) == 16 * 16 and positions[0] == 0


def test_picks_the_requested_part_and_reduces_it_to_its_top_line(tiny):
    bass = Part("Bass", (Note(36, 0, 4),))
    chords = Part("Piano", (Note(60, 0, 2), Note(64, 0, 2), Note(67, 0, 2), Note(65, 2, 2)))
    prime = Piece((bass, chords))
    spy = Spy(tiny)
    result = continue_melody(spy, prime, part_index=1, bars=1)
    assert result.prime.parts == (chords,)
    assert spy.calls[0][0].tolist()[:2] == [encoding.NOTE_ON + 67 - encoding.MIN_PITCH, encoding.HOLD]


def test_same_seed_same_notes_other_seed_other_notes(tiny):
    prime = PRIMES["3/4 with pickup"][0]
    first = continue_melody(tiny, prime, bars=8, seed=42, temperature=1.2)
    assert continue_melody(tiny, prime, bars=8, seed=42, temperature=1.2) == first
    assert continue_melody(tiny, prime, bars=8, seed=43, temperature=1.2) != first


def test_generation_leaves_the_global_rng_alone(tiny):
    state = torch.random.get_rng_state()
    continue_melody(tiny, PRIMES["6/8 ends on a bar line"][0], bars=2, seed=9)
    assert torch.equal(torch.random.get_rng_state(), state)


@pytest.mark.parametrize(
    ("controls", "received"),
    [
        ({"bars": 0}, "received 0"),
        ({"bars": 65}, "received 65"),
        ({"bars": 2.5}, "received 2.5"),
        ({"temperature": 0.0}, "received 0.0"),
        ({"temperature": 5.5}, "received 5.5"),
        ({"temperature": math.nan}, "received nan"),
        ({"top_p": 0.0}, "received 0.0"),
        ({"top_p": 1.01}, "received 1.01"),
        ({"seed": -1}, "received -1"),
        ({"seed": 2**31}, "received 2147483648"),
        ({"part_index": 1}, "received 1"),
    ],
)
def test_out_of_range_controls_raise_control_error(tiny, controls, received):
    with pytest.raises(ControlError, match=received):
        continue_melody(tiny, PRIMES["4/4 ends mid-bar"][0], **controls)


@pytest.fixture(scope="module")
def styled() -> MelodyLSTM:
    config = LSTMConfig(**{**PRESETS["lstm-tiny"].to_dict(), "styles": ("irish", "bach_chorale")})
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = MelodyLSTM(config).eval()
    with torch.no_grad():  # untrained logits are near-uniform: make the style decide what is sampled
        model.head.weight.mul_(30)
        model.style_embedding.table.weight.mul_(10)
    return model


def test_style_is_passed_to_the_model_as_its_index(styled):
    prime = PRIMES["4/4 ends mid-bar"][0]
    takes = {style: continue_melody(styled, prime, bars=4, seed=1, style=style) for style in ("irish", "bach_chorale")}
    assert takes["irish"] != takes["bach_chorale"]
    assert continue_melody(styled, prime, bars=4, seed=1, style="irish") == takes["irish"]
    assert continue_melody(styled, prime, bars=4, seed=1).generated.parts[0].notes  # None: any style


def test_a_style_the_model_does_not_know_is_refused_naming_both(styled, tiny):
    prime = PRIMES["4/4 ends mid-bar"][0]
    with pytest.raises(ControlError, match=r"one of \['irish', 'bach_chorale'\] \(received 'jazz'\)"):
        continue_melody(styled, prime, style="jazz")
    with pytest.raises(ControlError, match=r"no style conditioning \(received 'irish'\)"):
        continue_melody(tiny, prime, style="irish")


def test_a_prime_without_notes_is_refused(tiny):
    with pytest.raises(ControlError, match="no notes"):
        continue_melody(tiny, Piece((Part("empty"),)))


# --- the shipped model ------------------------------------------------------------------------------------------


def test_shipped_model_is_seeded(shipped):
    prime = PRIMES["4/4 ends mid-bar"][0]
    takes = [continue_melody(shipped, prime, bars=8, seed=seed) for seed in (0, 0, 1)]
    assert takes[0] == takes[1] and pitches(takes[0]) != pitches(takes[2])
    assert takes[0].generated.parts[0].notes  # it writes notes, not eight bars of rest


@pytest.mark.parametrize("name", sorted(PRIMES))
def test_shipped_model_fills_the_asked_bars(shipped, name):
    prime, start_beats, bar_beats = PRIMES[name]
    notes = continue_melody(shipped, prime, bars=8, seed=5).generated.parts[0].notes
    assert notes and notes[0].start_beats >= start_beats
    assert notes[-1].end_beats <= start_beats + 8 * bar_beats + 1e-9
    assert notes[-1].end_beats > start_beats + 6 * bar_beats  # music until near the end, not a trailing silence


def pitch_entropy(takes: list[Continuation]) -> float:
    counts = Counter(p for take in takes for p in pitches(take))
    total = sum(counts.values())
    return -sum(c / total * math.log2(c / total) for c in counts.values())


def test_lower_temperature_gives_less_varied_pitches(shipped):
    prime = PRIMES["4/4 ends mid-bar"][0]

    def takes(temperature: float) -> list[Continuation]:
        return [continue_melody(shipped, prime, bars=8, seed=s, temperature=temperature) for s in range(6)]

    cold, warm, hot = takes(0.3), takes(1.0), takes(2.0)
    assert pitch_entropy(cold) < pitch_entropy(warm) < pitch_entropy(hot)


def test_tiny_top_p_is_greedy_and_ignores_the_seed(shipped):
    prime = PRIMES["6/8 ends on a bar line"][0]
    greedy = [continue_melody(shipped, prime, bars=4, seed=s, top_p=1e-6).generated for s in (0, 1, 2)]
    assert greedy[0] == greedy[1] == greedy[2]
