"""Restyle: a VAE moves a melody's latent windows along the step between style centroids and decodes them in the
target style; centroids are measured on training windows."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch

from musegen_core import encoding
from musegen_core.errors import ControlError
from musegen_core.generate import restyle
from musegen_core.models.lstm import PRESETS as LSTM_PRESETS
from musegen_core.models.lstm import MelodyLSTM
from musegen_core.models.registry import load_model
from musegen_core.models.vae import PRESETS, MelodyVAE
from musegen_core.music import Note, Part, Piece, TimeSignature
from musegen_core.training.corpus import Tune
from musegen_core.training.vae_centroids import style_centroids
from musegen_core.training.vae_train import bar_windows

STYLES = ("irish", "bach_chorale")
TUNE = Piece(
    (Part("Fiddle", tuple(Note(62 + (i * 5) % 12, i * 0.5, 0.5) for i in range(32))),), 110, TimeSignature(4, 4)
)


def vae(centroids: tuple[tuple[float, ...], ...] = ()) -> MelodyVAE:
    config = replace(PRESETS["vae-tiny"], styles=STYLES, style_centroids=centroids)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        return MelodyVAE(config).eval()


def spread_centroids(latent: int = 8) -> tuple[tuple[float, ...], ...]:
    return (tuple([3.0] * latent), tuple([-3.0] * latent))


def test_restyle_covers_the_same_bars_and_is_deterministic():
    model = vae(spread_centroids())
    first = restyle(model, TUNE, style="bach_chorale", strength=2.0)
    assert first == restyle(model, TUNE, style="bach_chorale", strength=2.0)
    assert first.original.parts[0].notes == TUNE.parts[0].notes  # 4 bars: the whole tune, one window per 2 bars
    assert first.restyled.time_signature == TUNE.time_signature and first.restyled.end_beats <= 16
    assert len(first.source_styles) == 2 and set(first.source_styles) <= set(STYLES)


def test_strength_moves_the_latent_only_when_the_styles_differ():
    same = (tuple([1.0] * 8), tuple([1.0] * 8))  # zero step between the centroids
    model = vae(same)
    assert restyle(model, TUNE, style="irish", strength=0.0) == restyle(model, TUNE, style="irish", strength=4.0)
    spread = vae(spread_centroids())
    results = {restyle(spread, TUNE, style="bach_chorale", strength=s).restyled for s in (0.0, 2.0, 4.0)}
    assert len(results) > 1


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"style": "klezmer"}, "style must be one of"),
        ({"style": "irish", "strength": 9.0}, "strength must be a number within 0 and 4"),
        ({"style": "irish", "strength": float("nan")}, "strength must be"),
    ],
)
def test_bad_restyle_controls_are_refused(kwargs, message):
    with pytest.raises(ControlError, match=message):
        restyle(vae(spread_centroids()), TUNE, **kwargs)


def test_restyle_needs_a_vae_with_measured_centroids():
    with pytest.raises(ControlError, match="style centroids"):
        restyle(vae(), TUNE, style="irish")
    with pytest.raises(ControlError, match="need a VAE model"):
        restyle(MelodyLSTM(LSTM_PRESETS["lstm-tiny"]).eval(), TUNE, style="irish")


def test_centroids_are_the_mean_latent_of_each_styles_windows():
    model = vae()
    tokens = encoding.piece_to_tokens(TUNE).tokens
    tunes = [
        Tune("c", style, f"t{i}", "t", "4/4", "", None, 16, 0, str(i), np.roll(tokens, 16 * i))
        for i, style in enumerate(["irish", "irish", "bach_chorale"])
    ]
    centroids = style_centroids(model, tunes, per_style=1000, seed=0)
    assert len(centroids) == 2 and all(len(row) == 8 for row in centroids)
    for style, row in zip(STYLES, centroids, strict=True):
        windows, positions, _ = bar_windows([t for t in tunes if t.style == style], STYLES)
        with torch.inference_mode():
            expected = model.encode(windows, positions)[0].mean(dim=0)
        torch.testing.assert_close(torch.tensor(row), expected, atol=1e-5, rtol=1e-5)


def test_the_config_refuses_centroids_of_the_wrong_shape():
    with pytest.raises(ValueError, match="one 8-d row per style"):
        replace(PRESETS["vae-tiny"], styles=STYLES, style_centroids=(tuple([0.0] * 8),))


def test_the_shipped_vae_restyles_towards_the_target_style():
    model = load_model("vae-folk")
    kept = restyle(model, TUNE, style="german_folk", strength=0.0)
    moved = restyle(model, TUNE, style="german_folk", strength=3.0)
    assert kept.restyled.note_count > moved.restyled.note_count  # German folk tunes move in longer notes
