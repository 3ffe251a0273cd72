"""The melody Transformer: local RoPE attention, the KV cache and its fast stepper, styles, checkpoints."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from torch.nn import functional as F

from musegen_core import encoding
from musegen_core.generate import continue_melody
from musegen_core.models import checkpoint, registry
from musegen_core.models.style import StyleMix, style_rows
from musegen_core.models.transformer import (
    PRESETS,
    KVCache,
    MelodyTransformer,
    TransformerConfig,
    _Stepper,
    apply_rope,
    local_attention,
    rope_tables,
)
from musegen_core.music import Note, Part, Piece, TimeSignature

TINY = PRESETS["transformer-tiny"]  # context 8: sequences below run well past the attention window
STYLED = TransformerConfig(**{**TINY.to_dict(), "styles": ("irish", "bach_chorale")})


def model_of(config: TransformerConfig = TINY, seed: int = 0) -> MelodyTransformer:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return MelodyTransformer(config).eval()


def inputs(batch: int = 2, time: int = 30) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(1)
    tokens = torch.randint(0, encoding.VOCAB_SIZE, (batch, time), generator=generator)
    return tokens, torch.arange(1, time + 1).remainder(12).expand(batch, time)


def test_forward_shapes():
    logits, cache = model_of()(*inputs(3, 7))
    assert logits.shape == (3, 7, encoding.VOCAB_SIZE) and cache is None


def test_local_attention_equals_an_explicitly_masked_attention():
    generator = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(2, 3, 21, 4, generator=generator) for _ in range(3))
    steps = torch.arange(21)
    visible = (steps[None] <= steps[:, None]) & (steps[None] > steps[:, None] - 5)  # each step sees its last 5
    expected = F.scaled_dot_product_attention(q, k, v, attn_mask=visible)
    torch.testing.assert_close(local_attention(q, k, v, 5), expected)
    causal = F.scaled_dot_product_attention(q, k, v, is_causal=True)
    torch.testing.assert_close(local_attention(q, k, v, 21), causal)  # window ≥ time: plain causal attention


def test_rope_scores_depend_only_on_the_distance():
    generator = torch.Generator().manual_seed(0)
    q, k = torch.randn(8, generator=generator), torch.randn(8, generator=generator)

    def score(query_at: int, key_at: int) -> float:
        (qc, qs), (kc, ks) = rope_tables(8, 100.0, query_at, 1, "cpu"), rope_tables(8, 100.0, key_at, 1, "cpu")
        return float(apply_rope(q[None], qc, qs) @ apply_rope(k[None], kc, ks).T)

    assert score(7, 3) == pytest.approx(score(104, 100), abs=1e-4)
    assert score(7, 3) != pytest.approx(score(7, 4), abs=1e-4)


@pytest.mark.parametrize("prefill", [1, 5, 20])  # shorter and longer than the 8-step window
@pytest.mark.parametrize("config", [TINY, STYLED], ids=["plain", "styled"])
@torch.inference_mode()
def test_cached_steps_give_the_full_forward_logits(prefill, config):
    model, (tokens, positions) = model_of(config), inputs(1, 30)
    rows = style_rows(model.style_embedding, StyleMix(0, 1, 0.3) if config.styles else None, "transformer", "cpu")
    expected, _ = model(tokens, positions, rows)
    cache = KVCache(config, 1, torch.device("cpu"), torch.float32)
    parts = [model(tokens[:, :prefill], positions[:, :prefill], rows, cache)[0][0]]
    parts += [model(tokens[:, t : t + 1], positions[:, t : t + 1], rows, cache)[0][0] for t in range(prefill, 30)]
    torch.testing.assert_close(torch.cat(parts), expected[0], atol=1e-5, rtol=1e-4)
    assert cache.steps == 30


@pytest.mark.parametrize("preset", ["transformer-tiny", "transformer-small"])
@torch.inference_mode()
def test_fast_stepper_matches_the_cached_forward(preset):
    config = TransformerConfig(**{**PRESETS[preset].to_dict(), "styles": ("irish",)})
    model, (tokens, positions) = model_of(config), inputs(1, 40)
    rows = torch.tensor([0])
    expected, _ = model(tokens, positions, rows)
    cache = KVCache(config, 1, torch.device("cpu"), torch.float32)
    first, _ = model(tokens[:, :3], positions[:, :3], rows, cache)
    stepper = _Stepper(model, rows)
    stepped = [stepper.step(tokens[:, t], int(positions[0, t]), cache)[0] for t in range(3, 40)]
    torch.testing.assert_close(torch.cat([first[0], torch.stack(stepped)]), expected[0], atol=1e-4, rtol=1e-4)


@torch.inference_mode()
def test_a_batch_of_style_rows_steps_like_each_row_alone():
    """Guidance reads the styled and the any-style row in one batch: each must match its own single-row run."""
    config = TransformerConfig(**{**PRESETS["transformer-tiny"].to_dict(), "styles": ("irish", "bach_chorale")})
    model, (tokens, positions) = model_of(config), inputs(1, 20)

    def run(rows: torch.Tensor) -> torch.Tensor:
        """(steps, len(rows), vocab) logits of steps 3..19 read with one stepper over the rows."""
        cache = KVCache(config, len(rows), torch.device("cpu"), torch.float32)
        model(tokens[:, :3].expand(len(rows), -1), positions[:, :3].expand(len(rows), -1), rows, cache)
        stepper = _Stepper(model, rows)
        steps = [stepper.step(tokens[:, t].expand(len(rows)), int(positions[0, t]), cache) for t in range(3, 20)]
        return torch.stack(steps)

    both = run(torch.tensor([1, 2]))  # bach_chorale, any style
    torch.testing.assert_close(both[:, 0], run(torch.tensor([1]))[:, 0], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(both[:, 1], run(torch.tensor([2]))[:, 0], atol=1e-5, rtol=1e-5)


def test_a_cache_takes_one_step_at_a_time_after_the_prefill():
    model, (tokens, positions) = model_of(), inputs(1, 6)
    cache = KVCache(TINY, 1, torch.device("cpu"), torch.float32)
    model(tokens[:, :3], positions[:, :3], None, cache)
    with pytest.raises(ValueError, match="one step at a time"):
        model(tokens[:, 3:], positions[:, 3:], None, cache)


@pytest.mark.parametrize("style", [None, 1])
def test_generation_with_the_cache_equals_generation_without(style):
    model = model_of(STYLED)
    context, positions = torch.tensor([19, 1, 1, 1, 21, 1]), torch.arange(6 + 40) % 12

    def take(use_cache: bool, seed: int = 4) -> list[int]:
        generator = torch.Generator().manual_seed(seed)
        return model.generate(context, positions, 40, generator=generator, style=style, use_cache=use_cache).tolist()

    assert take(True) == take(False)
    assert take(True) == take(True) and take(True) != take(True, seed=5)
    assert len(take(True)) == 40 and all(0 <= t < encoding.VOCAB_SIZE for t in take(True))


@pytest.mark.parametrize(
    ("config", "style", "guidance", "known", "steps"),
    [
        (TINY, None, 1.0, 6, 30),
        (STYLED, None, 1.0, 6, 30),
        (STYLED, 1, 1.0, 12, 30),  # a context longer than the 8-step window
        (STYLED, 0, 2.0, 6, 30),
        (STYLED, StyleMix(0, 1, 0.3), 1.5, 3, 30),
        (STYLED, 0, 2.0, 3, 4),  # within the window: a cache of 7 slots, not 8
    ],
    ids=["plain", "any-style", "styled", "guided", "mix-guided", "short"],
)
def test_many_takes_at_once_are_the_takes_of_their_seeds(config, style, guidance, known, steps):
    """Take i of a batch is what `generate` writes with generator i alone, with or without the cache: each generator
    draws one token per step either way."""
    model, seeds = model_of(config), (3, 4, 5, 6)
    context, positions = torch.tensor([19, 1, 1, 1, 21, 1] * 2)[:known], torch.arange(known + steps) % 12
    steering = torch.zeros(12, encoding.VOCAB_SIZE)
    steering[:, encoding.HOLD] = 1.5
    options = {"style": style, "guidance": guidance, "steering": steering, "temperature": 1.3, "top_p": 0.95}

    def many(use_cache: bool) -> torch.Tensor:
        generators = [torch.Generator().manual_seed(seed) for seed in seeds]
        return model.generate_many(context, positions, steps, generators=generators, use_cache=use_cache, **options)

    cached = many(True)
    alone = [
        model.generate(context, positions, steps, generator=torch.Generator().manual_seed(s), **options) for s in seeds
    ]
    assert cached.shape == (len(seeds), steps) and cached.dtype == torch.int64
    assert torch.equal(cached, torch.stack(alone)) and torch.equal(many(False), cached)
    assert len({tuple(take) for take in cached.tolist()}) == len(seeds)


def test_many_takes_need_a_generator():
    context, positions = torch.tensor([19, 1]), torch.arange(2 + 8) % 12
    with pytest.raises(ValueError, match="received none"):
        model_of().generate_many(context, positions, 8, generators=[])


def test_a_short_cache_refuses_to_outgrow_its_slots():
    """A cache sized for a sequence shorter than the window (as `generate_many` makes) never wraps: it refuses more."""
    model, (tokens, positions) = model_of(), inputs(1, 6)
    cache = KVCache(TINY, 1, torch.device("cpu"), torch.float32, length=5)
    assert cache.keys.shape[3] == 5 and KVCache(TINY, 1, torch.device("cpu"), torch.float32, 50).keys.shape[3] == 8
    model(tokens[:, :4], positions[:, :4], None, cache)
    model(tokens[:, 4:5], positions[:, 4:5], None, cache)
    with pytest.raises(ValueError, match="holds 5 steps"):
        model(tokens[:, 5:], positions[:, 5:], None, cache)
    with pytest.raises(ValueError, match="holds 5 steps"):
        model(tokens, positions, None, KVCache(TINY, 1, torch.device("cpu"), torch.float32, length=5))


def test_generate_checks_positions_and_styles():
    context, positions = torch.tensor([19, 1]), torch.arange(2 + 8) % 12
    with pytest.raises(ValueError, match="positions"):
        model_of().generate(context, positions[:-1], 8)
    with pytest.raises(ValueError, match="no style conditioning"):
        model_of().generate(context, positions, 8, style=0)
    with pytest.raises(ValueError, match="received 2"):
        model_of(STYLED).generate(context, positions, 8, style=2)


def test_config_round_trips_and_refuses_unknown_missing_or_bad_fields():
    for config in [*PRESETS.values(), STYLED]:
        assert TransformerConfig.from_dict(json.loads(json.dumps(config.to_dict()))) == config
    with pytest.raises(ValueError, match=r"unknown \['hidden'\]"):
        TransformerConfig.from_dict({**TINY.to_dict(), "hidden": 4})
    with pytest.raises(ValueError, match=r"missing \['context'\]"):
        TransformerConfig.from_dict({k: v for k, v in TINY.to_dict().items() if k != "context"})
    with pytest.raises(ValueError, match="received dim 18, heads 4"):
        TransformerConfig(dim=18, heads=4)


def test_small_preset_is_one_to_three_million_parameters():
    assert 1e6 < MelodyTransformer(PRESETS["transformer-small"]).parameter_count() < 3e6


def test_checkpoint_round_trip_and_registry(tmp_path, monkeypatch):
    model = model_of(STYLED)
    info = {"version": "1", "description": "tiny", "trained_on": ["Public domain set"], "commercial_use_cleared": True}
    folder = checkpoint.save_checkpoint(model, STYLED, tmp_path / "tiny-tf", "# card\n", {}, info=info)
    loaded = checkpoint.load_checkpoint(folder)
    assert isinstance(loaded.model, MelodyTransformer) and loaded.meta["family"] == "transformer"
    tokens, positions = inputs()
    styles = torch.tensor([0, 1])
    assert torch.equal(loaded.model(tokens, positions, styles)[0], model(tokens, positions, styles)[0])
    monkeypatch.setenv("MUSEGEN_MODELS_DIR", str(tmp_path))
    [listed] = registry.list_models()
    assert (listed.name, listed.family, listed.styles) == ("tiny-tf", "transformer", ("irish", "bach_chorale"))
    assert registry.load_model("tiny-tf").styles == ("irish", "bach_chorale")


# --- the shipped Transformer --------------------------------------------------------------------------------------

SHIPPED = Path(__file__).resolve().parents[1] / "models" / "transformer-folk"


@pytest.fixture(scope="module")
def shipped() -> MelodyTransformer:
    if not (SHIPPED / "model.safetensors").is_file():
        pytest.skip("models/transformer-folk is missing: train it with `musegen train --model transformer`")
    return checkpoint.load_checkpoint(SHIPPED).model


def test_shipped_transformer_is_seeded_and_fills_the_bars_in_every_style(shipped):
    notes = [Note(67, 0, 1), Note(69, 1, 1), Note(71, 2, 2), Note(72, 4, 1), Note(71, 5, 1), Note(69, 6, 2)]
    prime = Piece((Part("Flute", tuple(notes)),), time_signature=TimeSignature(4, 4))
    for style in (None, *shipped.styles):
        takes = [continue_melody(shipped, prime, bars=8, seed=seed, style=style) for seed in (0, 0, 1)]
        assert takes[0] == takes[1] and takes[0] != takes[2]
        generated = takes[0].generated.parts[0].notes
        assert generated and generated[0].start_beats >= 8 and generated[-1].end_beats <= 8 + 32 + 1e-9
