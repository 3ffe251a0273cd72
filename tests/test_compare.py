"""Compare & Rate's pair-making rule (musegen_core.compare): seeded, documented, blind order, and the vote record."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest
import torch

from musegen_core import encoding
from musegen_core.compare import (
    IDENTICAL_RETRIES,
    MAX_PRIME_BARS,
    SEEDS,
    VERSIONS,
    Prime,
    Side,
    builtin_primes,
    candidate_pairs,
    first_bars,
    make_pair,
    pair_spec,
)
from musegen_core.feedback import FeedbackStore
from musegen_core.formats.midi import midi_to_piece
from musegen_core.models.registry import ModelInfo, load_model
from musegen_core.music import Note, Part, Piece, TimeSignature

ROOT = Path(__file__).resolve().parent.parent
STYLES = ("german_folk", "irish", "bach_chorale")


def _info(name: str, family: str, version: str = "1", styles=STYLES, parent: str | None = None) -> ModelInfo:
    lineage = {"parent": {"name": parent, "version": "1"}, "base": parent} if parent else {}
    return ModelInfo(name, family, version, "", (), False, styles=tuple(styles), lineage=lineage)


SHIPPED = [
    _info("lstm-folk", "lstm", "2"),
    _info("lstm-cleared", "lstm", styles=("irish", "bach_chorale")),
    _info("transformer-folk", "transformer"),
    _info("gan-folk", "gan"),
]
PROMOTED = {
    "default": "lstm-folk",
    "families": {"lstm": "lstm-folk", "transformer": "transformer-folk", "gan": "gan-folk"},
}


def _prime(name: str, pitch: int = 60) -> Prime:
    notes = tuple(Note(pitch + i % 5, i * 1.0, 1.0) for i in range(8))
    return Prime(name, Piece((Part("p", notes),), 100))


PRIMES = [_prime("one"), _prime("two", 62), _prime("three", 64)]


def test_a_pair_is_a_function_of_the_queue_seed_and_its_number() -> None:
    first = [pair_spec(7, i, SHIPPED, PROMOTED, PRIMES) for i in range(20)]
    again = [pair_spec(7, i, list(reversed(SHIPPED)), PROMOTED, PRIMES) for i in reversed(range(20))][::-1]
    assert first == again  # same queue, whatever the order pairs are asked in or the models listed in
    other = [pair_spec(8, i, SHIPPED, PROMOTED, PRIMES) for i in range(20)]
    assert first != other


def test_primes_take_turns() -> None:
    for seed in range(5):
        names = [pair_spec(seed, i, SHIPPED, PROMOTED, PRIMES).prime.name for i in range(9)]
        assert Counter(names) == {"one": 3, "two": 3, "three": 3}
        assert names[:3] == names[3:6] == names[6:]


def test_half_the_pairs_compare_seeds_half_compare_models_and_the_order_is_blind() -> None:
    specs = [pair_spec(seed, i, SHIPPED, PROMOTED, PRIMES) for seed in range(10) for i in range(40)]
    kinds = Counter(spec.kind for spec in specs)
    assert 150 <= kinds[SEEDS] <= 250 and kinds[SEEDS] + kinds[VERSIONS] == 400
    for spec in specs:
        if spec.kind == SEEDS:
            assert spec.a.model_name == spec.b.model_name and spec.a.seed != spec.b.seed
        else:
            assert spec.a.model_name != spec.b.model_name
        assert 1 <= spec.a.seed <= 9_999 and 1 <= spec.b.seed <= 9_999
        infos = {info.name: info for info in SHIPPED}
        shared = set(infos[spec.a.model_name].styles) & set(infos[spec.b.model_name].styles)
        assert spec.style in shared if shared else spec.style is None
    versus = [spec for spec in specs if spec.kind == VERSIONS]
    with_default = [spec for spec in versus if "lstm-folk" in (spec.a.model_name, spec.b.model_name)]
    default_first = sum(spec.a.model_name == "lstm-folk" for spec in with_default)
    assert 0.3 < default_first / len(with_default) < 0.7  # which side is A does not give the model away
    met = {tuple(sorted((s.a.model_name, s.b.model_name))) for s in versus}
    assert met == set(candidate_pairs(SHIPPED, PROMOTED)[1])


def test_versions_pairs_are_incumbents_and_half_of_them_challengers_once_a_version_exists() -> None:
    challenger = _info("lstm-folk-v3", "lstm", "3", parent="lstm-folk")
    infos = [*SHIPPED, challenger]
    challengers, incumbents = candidate_pairs(infos, PROMOTED)
    assert challengers == [("lstm-folk", "lstm-folk-v3")]
    assert ("gan-folk", "lstm-folk") in incumbents and ("lstm-cleared", "lstm-folk") in incumbents
    assert ("gan-folk", "transformer-folk") not in incumbents  # neither is the default nor in the other's family
    versus = [s for seed in range(10) for i in range(40) if (s := pair_spec(seed, i, infos, PROMOTED, PRIMES)).kind
              == VERSIONS]  # fmt: skip
    share = sum({s.a.model_name, s.b.model_name} == {"lstm-folk", "lstm-folk-v3"} for s in versus) / len(versus)
    assert 0.45 < share < 0.7  # half from the challengers, plus its share of all candidates


def test_one_model_gives_seed_pairs_only() -> None:
    specs = [pair_spec(3, i, SHIPPED[:1], PROMOTED, PRIMES) for i in range(30)]
    assert {spec.kind for spec in specs} == {SEEDS}
    with pytest.raises(ValueError):
        pair_spec(3, 0, [], PROMOTED, PRIMES)


def test_first_bars_cuts_after_whole_bars_counting_a_pickup() -> None:
    notes = (Note(67, 0.0, 1.0), *(Note(60 + i, 1.0 + i * 2.0, 2.5) for i in range(12)))
    piece = Piece((Part("p", notes),), 100, TimeSignature(3, 4), pickup_beats=1.0)
    cut = first_bars(piece, 3)  # the pickup and two whole bars: up to beat 7
    assert cut.parts[0].notes[-1].start_beats < 7 and max(n.end_beats for n in cut.parts[0].notes) == 7
    assert cut.pickup_beats == 1.0 and cut.bar_count() == 3
    assert first_bars(cut, 3) == cut


@pytest.mark.skipif(not (ROOT / "models" / "lstm-folk").exists(), reason="shipped model missing")
def test_built_in_primes_are_short_one_part_tunes() -> None:
    primes = builtin_primes()
    assert [p.name.split(" ")[0] for p in primes] == ["Twinkle,", "Frère", "Ode", "Greensleeves"]
    assert all(len(p.piece.parts) == 1 and p.piece.bar_count() <= MAX_PRIME_BARS for p in primes)
    assert primes[3].piece.pickup_beats > 0


@pytest.mark.skipif(not (ROOT / "models" / "lstm-folk").exists(), reason="shipped model missing")
def test_a_pair_made_and_voted_goes_into_the_store(tmp_path: Path) -> None:
    torch.set_num_threads(1)
    prime = builtin_primes()[3]  # Greensleeves: 6/8 with a pickup
    infos = [_info("lstm-folk", "lstm", "2", styles=("irish",)), _info("lstm-cleared", "lstm", styles=("irish",))]
    spec = next(s for i in range(20) if (s := pair_spec(1, i, infos, PROMOTED, [prime])).kind == VERSIONS)
    pair = make_pair(spec, load_model)
    assert pair.take_a.generated.parts[0].notes != pair.take_b.generated.parts[0].notes
    assert pair.take_a.start_beats == pair.take_b.start_beats >= prime.piece.end_beats
    assert pair.reveal().startswith(f"A was {spec.a.model_name} v{spec.a.model_version} seed {spec.a.seed};")

    store = FeedbackStore(f"sqlite:///{tmp_path / 'f.sqlite3'}")
    vote_id = store.add_pair_vote(pair.vote("b", "Ada", ["catchy"]))
    [vote] = store.pair_votes()
    assert (vote.id, vote.choice, vote.rater, vote.tags, vote.prime_name) == (vote_id, "b", "Ada", ("catchy",),
                                                                              prime.name)  # fmt: skip
    assert (vote.a.model_name, vote.a.seed, vote.b.model_name, vote.b.seed) == (
        pair.a.model_name, pair.a.seed, pair.b.model_name, pair.b.seed,
    )  # fmt: skip
    controls = vote.a.controls
    assert controls["bars"] == spec.bars and controls["style"] == "irish" and controls["seed"] == pair.a.seed
    assert controls["pickup_beats"] == prime.piece.pickup_beats and controls["start_beats"] == pair.take_a.start_beats
    take = midi_to_piece(vote.a.midi)
    assert take.parts[0].notes[0].start_beats >= pair.take_a.start_beats - 1e-6  # the take alone, on the prime's line
    store.add_pair_vote(pair.vote("skip", "Ada"))  # the same rater on the same pair: replaced, not added
    assert [v.choice for v in store.pair_votes()] == ["skip"]
    store.dispose()


class _SameEveryTime:
    """A model whose takes ignore the seed (as a greedy decoder would)."""

    family, styles = "lstm", ()

    def generate_many(self, context, positions, steps, *, generators, **_) -> torch.Tensor:
        return torch.full((len(generators), steps), encoding.REST, dtype=torch.long)


def test_identical_takes_move_b_to_the_next_seeds() -> None:
    spec = pair_spec(0, 0, [_info("fixed", "lstm", styles=())], {}, PRIMES)
    pair = make_pair(spec, lambda name: _SameEveryTime())
    seed = spec.b.seed
    for _ in range(IDENTICAL_RETRIES):  # every retry gives the same notes again: B ends on the last seed tried
        seed = seed % 9_999 + 1
    assert pair.a == spec.a and pair.b == Side("fixed", "1", seed)
