"""The melody GAN: save/load, deterministic well-formed generation, adversarial steps and the gradient penalty."""

from __future__ import annotations

import argparse
from dataclasses import replace

import numpy as np
import pytest
import torch
from torch import nn

from musegen_core import encoding
from musegen_core.models import gan
from musegen_core.models.checkpoint import load_checkpoint, save_checkpoint
from musegen_core.models.registry import models_dir
from musegen_core.models.style import StyleMix
from musegen_core.training import gan_train
from musegen_core.training.corpus import Tune

STYLES = ("irish", "german_folk")


def tiny(styles: tuple[str, ...] = STYLES) -> gan.MelodyGAN:
    torch.manual_seed(0)
    return gan.MelodyGAN(replace(gan.PRESETS["gan-tiny"], styles=styles)).eval()


def inputs(bars: int = 2, bar_steps: int = 16) -> tuple[torch.Tensor, torch.Tensor]:
    context = torch.tensor([encoding.NOTE_ON + 20, encoding.HOLD, encoding.REST, encoding.NOTE_ON + 22] * 8)
    positions = torch.from_numpy(encoding.bar_positions(len(context) + bars * bar_steps, bar_steps))
    return context, positions


@pytest.mark.parametrize("styles", [STYLES, ()])
def test_save_load_gives_identical_outputs(tmp_path, styles):
    model = tiny(styles)
    save_checkpoint(model, model.config, tmp_path / "gan", "card", {})
    loaded = load_checkpoint(tmp_path / "gan").model
    previous, noise = torch.randint(0, encoding.VOCAB_SIZE, (3, gan.BAR)), torch.randn(3, model.config.noise_dim)
    rows = torch.tensor([0, 1, 2]) if styles else None
    assert loaded.family == "gan" and loaded.has_likelihood is False and loaded.styles == styles
    assert torch.equal(model(previous, noise, rows), loaded(previous, noise, rows))


def test_generate_is_deterministic_and_well_formed():
    model = tiny()
    context, positions = inputs(bars=3)
    take = model.generate(context, positions, 48, generator=torch.Generator().manual_seed(7), style=1)
    again = model.generate(context, positions, 48, generator=torch.Generator().manual_seed(7), style=1)
    other = model.generate(context, positions, 48, generator=torch.Generator().manual_seed(8), style=None)
    assert take.shape == (48,) and take.dtype == torch.int64 and torch.equal(take, again)
    assert not torch.equal(take, other)
    assert int(take.min()) >= 0 and int(take.max()) < encoding.VOCAB_SIZE
    assert all(n.duration_beats > 0 for n in encoding.tokens_to_notes(take.numpy()))


@pytest.mark.parametrize(
    ("style", "guidance", "steered"),
    [(1, 1.0, False), (None, 1.0, False), (0, 2.0, True), (StyleMix(0, 1, 0.3), 1.0, False)],
)
def test_many_takes_at_once_are_the_takes_of_their_seeds(style, guidance, steered):
    model, (context, positions) = tiny(), inputs(bars=3)
    steering = torch.zeros(16, encoding.VOCAB_SIZE)
    steering[:, encoding.REST] = 2.0 if steered else 0.0
    options = {"style": style, "guidance": guidance, "steering": steering, "temperature": 1.3}
    many = model.generate_many(context, positions, 48, generators=[torch.Generator().manual_seed(s) for s in (3, 4, 5)],
                               **options)  # fmt: skip
    alone = [
        model.generate(context, positions, 48, generator=torch.Generator().manual_seed(s), **options) for s in (3, 4, 5)
    ]
    assert many.shape == (3, 48) and torch.equal(many, torch.stack(alone))
    assert not torch.equal(many[0], many[1])


def test_many_takes_need_a_generator():
    context, positions = inputs()
    with pytest.raises(ValueError, match="received none"):
        tiny().generate_many(context, positions, 32, generators=[])


def test_generate_refuses_a_style_out_of_range():
    context, positions = inputs()
    with pytest.raises(ValueError, match="style"):
        tiny().generate(context, positions, 32, style=5)


def test_other_meters_are_generated_in_chunks_cut_at_bar_lines():
    assert gan.chunk_lengths(list(encoding.bar_positions(36, 12))) == [12, 12, 12]  # 3/4
    assert gan.chunk_lengths(list(encoding.bar_positions(48, 24))) == [16, 8, 16, 8]  # 6/4
    assert gan.chunk_lengths(list(encoding.bar_positions(32, 16))) == [16, 16]
    context, positions = inputs(bars=2, bar_steps=12)
    assert tiny().generate(context, positions, 24, generator=torch.Generator().manual_seed(0)).shape == (24,)


def test_bar_pairs_start_where_generation_starts_chunks_in_every_meter():
    tokens = np.arange(2, 2 + 36) % encoding.VOCAB_SIZE  # 4-step pickup, then 2 bars of 4/4 (or 2/4, 3/4 bars)
    four_four = _tune(tokens, bar_steps=16, offset_steps=12)
    previous, bars, rows = gan_train.bar_pairs([four_four], STYLES)
    assert previous.shape == bars.shape == (2, 16) and rows.tolist() == [0, 0]
    assert previous[0, :12].tolist() == [encoding.REST] * 12 and previous[0, 12:].tolist() == tokens[:4].tolist()
    assert bars[0].tolist() == tokens[4:20].tolist() and previous[1].tolist() == bars[0].tolist()
    two_four = gan_train.bar_pairs([_tune(tokens, bar_steps=8, offset_steps=4)], STYLES)[1]
    assert [bar[0] for bar in two_four.tolist()] == tokens[[4, 12, 20]].tolist()  # every bar line, grids overlap
    waltz_positions = encoding.bar_positions(36, 12, 0)
    waltz = gan_train.bar_pairs([_tune(tokens, bar_steps=12, offset_steps=0)], STYLES)[1]
    assert [bar[0] for bar in waltz.tolist()] == tokens[[0, 12]].tolist()  # the chunk at 24 has no 16 steps left
    generated_chunks = gan.chunk_lengths(list(waltz_positions))
    assert gan_train.chunk_starts(waltz_positions) == list(np.cumsum([0, *generated_chunks[:-1]]))


def _tune(tokens: np.ndarray, bar_steps: int, offset_steps: int) -> Tune:
    return Tune("oneills", "irish", "t#0", "t", "4/4", "", None, bar_steps, offset_steps, "0", tokens)


def test_gradient_penalty_is_a_finite_scalar():
    config = replace(gan.PRESETS["gan-tiny"], styles=STYLES)
    critic = gan.Critic(config)
    previous = gan_train.one_hot(torch.randint(0, config.vocab_size, (4, gan.BAR)), config)
    real = gan_train.one_hot(torch.randint(0, config.vocab_size, (4, gan.BAR)), config)
    fake = torch.softmax(torch.randn(4, gan.BAR, config.vocab_size), dim=-1)
    penalty = gan.gradient_penalty(critic, previous, real, fake, torch.tensor([0, 1, 2, 0]))
    assert penalty.shape == () and torch.isfinite(penalty) and penalty >= 0
    assert critic(previous, real, None).shape == (4,)


def test_adversarial_steps_change_both_networks():
    torch.manual_seed(0)
    config = replace(gan.PRESETS["gan-tiny"], styles=STYLES)
    generator, critic = gan.MelodyGAN(config), gan.Critic(config)
    nets = nn.ModuleDict({"generator": generator, "critic": critic})
    before = {k: v.clone() for k, v in nets.state_dict().items()}
    optimiser = torch.optim.Adam(nets.parameters(), lr=1e-3, betas=(0.5, 0.9))
    args = argparse.Namespace(batch_size=8, style_dropout=0.5)
    rng = np.random.default_rng(0)
    train = [torch.randint(2, 40, (32, gan.BAR)), torch.randint(0, 40, (32, gan.BAR)), torch.randint(0, 3, (32,))]
    critic_loss = gan_train.critic_step(generator, critic, optimiser, *gan_train._batch(train, rng, args, 2))
    assert all(torch.equal(before[f"generator.{k}"], v) for k, v in generator.state_dict().items())
    generator_loss = gan_train.generator_step(generator, critic, optimiser, *gan_train._batch(train, rng, args, 2))
    assert np.isfinite(critic_loss) and np.isfinite(generator_loss)
    changed = {k.split(".")[0] for k, v in nets.state_dict().items() if not torch.equal(before[k], v)}
    assert changed == {"generator", "critic"}


def test_transposition_keeps_pitches_in_range():
    top = encoding.VOCAB_SIZE - 1
    previous, bar = torch.full((1, 16), top), torch.full((1, 16), encoding.HOLD)
    shifted_previous, shifted_bar = gan_train.transposed_pair(previous, bar, torch.tensor([5]))
    assert int(shifted_previous.max()) == top and torch.equal(shifted_bar, bar)


@pytest.mark.skipif(not (models_dir() / "gan-folk").is_dir(), reason="no shipped gan-folk model")
def test_shipped_model_continues_a_4_4_prime_by_two_bars():
    from musegen_core.generate import continue_melody
    from musegen_core.models.registry import load_model
    from musegen_core.music import Note, Part, Piece

    notes = tuple(Note(60 + 2 * (i % 4), i * 1.0, 1.0, 90) for i in range(8))
    prime = Piece(parts=(Part("melody", notes),))
    model = load_model("gan-folk")
    take = continue_melody(model, prime, bars=2, seed=3, style="irish")
    again = continue_melody(model, prime, bars=2, seed=3, style="irish")
    assert take.start_beats == 8.0 and take.generated.parts[0].notes == again.generated.parts[0].notes
    assert all(8.0 <= n.start_beats < 16.0 for n in take.generated.parts[0].notes)


def _two_register_pairs(count: int) -> list[torch.Tensor]:
    """Toy bar pairs whose style is plain from the notes: style 0 plays low pitches, style 1 high ones."""
    rng = np.random.default_rng(0)
    rows = torch.from_numpy(rng.integers(0, 2, count))
    low = rng.integers(2, 12, (count, 2 * gan.BAR))
    pitches = torch.from_numpy(low) + 30 * rows[:, None]
    tokens = torch.where(torch.arange(2 * gan.BAR) % 4 == 0, encoding.NOTE_ON + pitches, encoding.HOLD)
    return [tokens[:, : gan.BAR], tokens[:, gan.BAR :], rows]


def test_style_loss_counts_only_rows_that_name_one_style():
    config = replace(gan.PRESETS["gan-tiny"], styles=STYLES)
    critic = gan.Critic(config)
    previous = gan_train.one_hot(torch.randint(0, config.vocab_size, (3, gan.BAR)), config)
    bar = gan_train.one_hot(torch.randint(0, config.vocab_size, (3, gan.BAR)), config)
    assert gan_train.style_loss(critic, previous, bar, torch.tensor([2, 2, 2])) == 0  # all "any style"
    assert gan_train.style_loss(critic, previous, bar, None) == 0
    assert gan_train.style_loss(critic, previous, bar, torch.tensor([0, 1, 2])) > 0
    with pytest.raises(ValueError, match="no styles"):
        gan.Critic(gan.PRESETS["gan-tiny"]).style_logits(previous, bar)


def test_auxiliary_style_loss_teaches_the_generator_to_play_the_asked_style():
    torch.manual_seed(0)
    config = replace(gan.PRESETS["gan-tiny"], styles=STYLES)
    generator, critic = gan.MelodyGAN(config), gan.Critic(config)
    optimiser = torch.optim.Adam([*generator.parameters(), *critic.parameters()], lr=1e-3, betas=(0.5, 0.9))
    train, valid = _two_register_pairs(512), _two_register_pairs(128)
    args, rng = argparse.Namespace(batch_size=32, style_dropout=0.1), np.random.default_rng(1)
    before = gan_train.style_accuracy(generator, critic, *valid)
    for _ in range(260):
        gan_train.critic_step(generator, critic, optimiser, *gan_train._batch(train, rng, args, len(STYLES)))
        gan_train.generator_step(generator, critic, optimiser, *gan_train._batch(train, rng, args, len(STYLES)))
    after = gan_train.style_accuracy(generator, critic, *valid)
    assert after["style_accuracy_real"] > 0.95 and after["style_accuracy_generated"] > 0.9
    assert after["style_accuracy_generated"] > before["style_accuracy_generated"] + 0.3
