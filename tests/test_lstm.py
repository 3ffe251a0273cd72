"""The melody LSTM, its checkpoints and the model registry, on the tiny CPU preset."""

from __future__ import annotations

import json

import pytest
import torch
from many_takes import OPTIONS, assert_each_take_is_its_seeds, assert_refuses_bad_generators
from safetensors.torch import load_file, save_file

from musegen_core import encoding
from musegen_core.errors import CheckpointError
from musegen_core.hashing import file_sha256
from musegen_core.models import checkpoint, registry
from musegen_core.models.lstm import PRESETS, LSTMConfig, MelodyLSTM, _Stepper
from musegen_core.models.style import StyleMix, repeat_rows, style_rows

TINY = PRESETS["lstm-tiny"]
CARD = "# tiny\n\ntest model card\n"
INFO = {"version": "3", "description": "tiny", "trained_on": ["Public domain set"], "commercial_use_cleared": True}


def tiny_model(seed: int = 0) -> MelodyLSTM:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return MelodyLSTM(TINY).eval()


def inputs(batch: int = 2, time: int = 20) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(1)
    tokens = torch.randint(0, encoding.VOCAB_SIZE, (batch, time), generator=generator)
    return tokens, torch.arange(1, time + 1).remainder(16).expand(batch, time)


@pytest.fixture
def saved(tmp_path):
    model = tiny_model()
    folder = checkpoint.save_checkpoint(
        model, TINY, tmp_path / "tiny", CARD, {"test_nll_bits_per_step": 1.5}, info=INFO
    )
    return model, folder


def test_forward_shapes_and_state():
    logits, (h, c) = tiny_model()(*inputs(3, 7))
    assert logits.shape == (3, 7, encoding.VOCAB_SIZE)
    assert h.shape == c.shape == (TINY.layers, 3, TINY.hidden)


def test_stepping_with_state_matches_a_whole_sequence():
    model, (tokens, positions) = tiny_model(), inputs(1, 12)
    whole, _ = model(tokens, positions)
    first, state = model(tokens[:, :5], positions[:, :5])
    rest, _ = model(tokens[:, 5:], positions[:, 5:], state)
    torch.testing.assert_close(torch.cat([first, rest], dim=1), whole)


def stepped_logits(model: MelodyLSTM, tokens: torch.Tensor, positions: torch.Tensor, rows=None) -> torch.Tensor:
    """(batch, time, vocab) logits of the module on the first step, then of `_Stepper` on all rows at once."""
    logits, state = model(tokens[:, :1], positions[:, :1], styles=repeat_rows(rows, len(tokens)))
    extra = model.style_embedding(rows, 1) if model.style_embedding is not None else None
    stepper = _Stepper(model, model.lstm, extra, state)
    stepped = [stepper.step(tokens[:, t], int(positions[0, t])) for t in range(1, tokens.shape[1])]
    return torch.stack([logits[:, 0], *stepped], dim=1)


@pytest.mark.parametrize("preset", ["lstm-tiny", "lstm-small"])
@torch.inference_mode()
def test_fast_stepping_matches_the_lstm_module(preset):
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = MelodyLSTM(PRESETS[preset]).eval()
    tokens, positions = inputs(3, 10)  # three different sequences stepped together
    expected, _ = model(tokens, positions)
    torch.testing.assert_close(stepped_logits(model, tokens, positions), expected, atol=1e-5, rtol=1e-4)


def test_config_round_trips_and_refuses_unknown_or_missing_fields():
    for config in PRESETS.values():
        assert LSTMConfig.from_dict(json.loads(json.dumps(config.to_dict()))) == config
    with pytest.raises(ValueError, match="unknown \\['heads'\\]"):
        LSTMConfig.from_dict({**TINY.to_dict(), "heads": 4})
    with pytest.raises(ValueError, match="missing \\['hidden'\\]"):
        LSTMConfig.from_dict({k: v for k, v in TINY.to_dict().items() if k != "hidden"})


def test_small_preset_is_about_a_million_parameters():
    assert 0.5e6 < MelodyLSTM(PRESETS["lstm-small"]).parameter_count() < 1.5e6


def test_generate_is_seeded_and_returns_the_asked_steps():
    model = tiny_model()
    context, positions = torch.tensor([19, 1, 1, 1]), torch.arange(4 + 32) % 16

    def run(seed: int) -> list[int]:
        generator = torch.Generator().manual_seed(seed)
        return model.generate(context, positions, 32, generator=generator).tolist()

    assert run(5) == run(5)
    assert run(5) != run(6)
    assert len(run(5)) == 32 and all(0 <= t < encoding.VOCAB_SIZE for t in run(5))
    with pytest.raises(ValueError, match="positions"):
        model.generate(context, positions[:-1], 32)


def test_save_then_load_gives_identical_logits(saved):
    model, folder = saved
    assert sorted(p.name for p in folder.iterdir()) == ["README.md", "config.json", "model.safetensors"]
    loaded = checkpoint.load_checkpoint(folder)
    assert not loaded.model.training
    tokens, positions = inputs()
    assert torch.equal(loaded.model(tokens, positions)[0], model(tokens, positions)[0])
    meta = json.loads((folder / "config.json").read_text())
    assert meta["family"] == "lstm" and meta["encoding_version"] == encoding.ENCODING_VERSION
    assert meta["format_version"] == checkpoint.FORMAT_VERSION and len(meta["sha256"]) == 64
    assert (folder / "README.md").read_text() == CARD


def test_saving_again_replaces_the_checkpoint_and_leaves_no_temporaries(saved):
    _, folder = saved
    checkpoint.save_checkpoint(tiny_model(seed=1), TINY, folder, CARD, {})
    assert sorted(p.name for p in folder.parent.iterdir()) == ["tiny"]
    assert json.loads((folder / "config.json").read_text())["metrics"] == {}


def rewrite_weights(folder, state) -> None:
    """Replace the weights and update the config's sha256, so only the strict key check can object."""
    save_file(state, str(folder / "model.safetensors"))
    meta = json.loads((folder / "config.json").read_text())
    meta["sha256"] = file_sha256(folder / "model.safetensors")
    (folder / "config.json").write_text(json.dumps(meta))


def test_strict_load_names_missing_and_unexpected_keys(saved):
    _, folder = saved
    state = load_file(str(folder / "model.safetensors"))
    state["head.extra"] = state.pop("head.bias")
    rewrite_weights(folder, state)
    with pytest.raises(CheckpointError, match=r"missing keys \['head.bias'\], unexpected keys \['head.extra'\]"):
        checkpoint.load_checkpoint(folder)


def test_strict_load_names_tensors_of_the_wrong_shape(saved):
    _, folder = saved
    state = load_file(str(folder / "model.safetensors"))
    state["head.bias"] = torch.zeros(3)
    rewrite_weights(folder, state)
    with pytest.raises(CheckpointError, match=r"head\.bias"):
        checkpoint.load_checkpoint(folder)


def test_changed_weights_fail_the_sha256_check(saved):
    _, folder = saved
    state = load_file(str(folder / "model.safetensors"))
    state["head.bias"] = state["head.bias"] + 1
    save_file(state, str(folder / "model.safetensors"))
    with pytest.raises(CheckpointError, match="sha256"):
        checkpoint.load_checkpoint(folder)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"encoding_version": 99}, "encoding_version 99"),
        ({"format_version": 0}, "format_version 0"),
        ({"family": "vae9"}, "unknown model family 'vae9'"),
        ({"model": {"hidden": 16}}, "bad model config"),
    ],
)
def test_mismatched_config_is_refused(saved, change, message):
    _, folder = saved
    meta = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps(meta | change))
    with pytest.raises(CheckpointError, match=message):
        checkpoint.load_checkpoint(folder)


def test_broken_or_incomplete_config_is_refused(saved):
    _, folder = saved
    meta = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({k: v for k, v in meta.items() if k != "sha256"}))
    with pytest.raises(CheckpointError, match=r"lacks the key\(s\) \['sha256'\]"):
        checkpoint.load_checkpoint(folder)
    (folder / "config.json").write_text("{not json")
    with pytest.raises(CheckpointError, match="not valid JSON"):
        checkpoint.load_checkpoint(folder)
    (folder / "config.json").unlink()
    with pytest.raises(CheckpointError, match=r"no config\.json"):
        checkpoint.load_checkpoint(folder)


def test_garbage_weights_are_refused(saved):
    _, folder = saved
    (folder / "model.safetensors").write_bytes(b"\x00" * 64)
    rewrite_meta = json.loads((folder / "config.json").read_text())
    rewrite_meta["sha256"] = file_sha256(folder / "model.safetensors")
    (folder / "config.json").write_text(json.dumps(rewrite_meta))
    with pytest.raises(CheckpointError, match="cannot be read as safetensors"):
        checkpoint.load_checkpoint(folder)


def test_registry_lists_and_loads_models(saved, monkeypatch):
    _, folder = saved
    (folder.parent / "not-a-model").mkdir()
    monkeypatch.setenv("MUSEGEN_MODELS_DIR", str(folder.parent))
    assert registry.models_dir() == folder.parent
    [info] = registry.list_models()
    assert info == registry.ModelInfo(
        "tiny", "lstm", "3", "tiny", ("Public domain set",), True, {"test_nll_bits_per_step": 1.5}, CARD
    )
    assert info.licence_note.startswith("Cleared for commercial use")
    assert isinstance(registry.load_model("tiny"), MelodyLSTM)
    with pytest.raises(CheckpointError, match=r"no model named 'nope' .* \(installed: \['tiny'\]\)"):
        registry.load_model("nope")
    with pytest.raises(CheckpointError, match="no model named"):
        registry.load_model("../tiny")


def test_promoted_json_sets_the_default_and_each_familys_model(saved, monkeypatch):
    _, folder = saved
    for name in ("aaa-model", "folk-lstm", "zzz-model"):
        checkpoint.save_checkpoint(tiny_model(), TINY, folder.parent / name, CARD, {})
    monkeypatch.setenv("MUSEGEN_MODELS_DIR", str(folder.parent))
    assert registry.default_model_name() is None and registry.resolve_model_name("lstm") == "lstm"
    promoted = {"default": "folk-lstm", "families": {"lstm": "zzz-model"}}
    (folder.parent / registry.PROMOTED_FILE).write_text(json.dumps(promoted))
    assert [info.name for info in registry.list_models()] == ["folk-lstm", "aaa-model", "tiny", "zzz-model"]
    assert registry.resolve_model_name("lstm") == "zzz-model"  # a family → its promoted model
    assert registry.resolve_model_name("aaa-model") == "aaa-model"  # a name stays itself
    assert isinstance(registry.load_model("lstm"), MelodyLSTM)


def test_licence_note_names_the_non_commercial_corpus():
    info = registry.ModelInfo(
        "m", "lstm", "1", "", ("Essen: non-commercial use only", "O'Neill's: public domain"), False
    )
    assert info.licence_note == "Not cleared for commercial use: trained on Essen: non-commercial use only."


def test_registry_skips_a_broken_model(saved, monkeypatch):
    _, folder = saved
    (folder / "config.json").write_text("{}")
    monkeypatch.setenv("MUSEGEN_MODELS_DIR", str(folder.parent))
    assert registry.list_models() == []


def test_default_models_dir_is_the_repository_models_folder(monkeypatch):
    monkeypatch.delenv("MUSEGEN_MODELS_DIR", raising=False)
    assert registry.models_dir().name == "models"
    assert (registry.models_dir().parent / "musegen_core").is_dir()


# --- style conditioning ---------------------------------------------------------------------------------------

STYLED = LSTMConfig(**{**TINY.to_dict(), "styles": ("irish", "bach_chorale")})


def styled_model(seed: int = 0) -> MelodyLSTM:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return MelodyLSTM(STYLED).eval()


def test_a_v1_config_without_style_fields_still_loads():
    v1 = {k: v for k, v in TINY.to_dict().items() if k not in ("styles", "style_dim")}
    assert LSTMConfig.from_dict(v1).styles == ()
    assert "style_embedding.table.weight" not in MelodyLSTM(LSTMConfig.from_dict(v1)).state_dict()
    assert LSTMConfig.from_dict(json.loads(json.dumps(STYLED.to_dict()))) == STYLED


def test_style_changes_the_logits_and_none_is_the_any_style_row():
    model, (tokens, positions) = styled_model(), inputs(2, 6)
    irish, _ = model(tokens, positions, styles=torch.tensor([0, 0]))
    bach, _ = model(tokens, positions, styles=torch.tensor([1, 1]))
    unset, _ = model(tokens, positions)
    any_row, _ = model(tokens, positions, styles=torch.tensor([2, 2]))
    assert not torch.allclose(irish, bach)
    assert torch.equal(unset, any_row)


@pytest.mark.parametrize("style", [None, 0, 1, StyleMix(0, 1, 0.3)])
@torch.inference_mode()
def test_fast_stepping_matches_the_lstm_module_with_a_style(style):
    model, (tokens, positions) = styled_model(), inputs(2, 10)
    rows = style_rows(model.style_embedding, style, "lstm", torch.device("cpu"))
    expected, _ = model(tokens, positions, styles=repeat_rows(rows, 2))
    torch.testing.assert_close(stepped_logits(model, tokens, positions, rows), expected, atol=1e-5, rtol=1e-4)


def test_generate_takes_a_style_index_and_refuses_a_bad_one():
    context, positions = torch.tensor([19, 1, 1, 1]), torch.arange(4 + 32) % 16

    def take(model: MelodyLSTM, style: int | None) -> list[int]:
        return model.generate(context, positions, 32, generator=torch.Generator().manual_seed(2), style=style).tolist()

    model = styled_model()
    with torch.no_grad():  # an untrained model is near-uniform: make the style matter for the sampled tokens
        model.head.weight.mul_(30)
        model.style_embedding.table.weight.mul_(10)
    assert take(model, 0) == take(model, 0) and take(model, 0) != take(model, 1)
    with pytest.raises(ValueError, match="received 2"):
        take(model, 2)
    with pytest.raises(ValueError, match="no style conditioning"):
        take(tiny_model(), 0)


# --- several takes at once ------------------------------------------------------------------------------------


@OPTIONS
def test_each_take_of_generate_many_is_the_single_take_with_its_seed(options):
    model = styled_model()
    with torch.no_grad():  # an untrained model is near-uniform: make the style and the steps matter
        model.head.weight.mul_(30)
        model.style_embedding.table.weight.mul_(10)
    context, positions = torch.tensor([19, 1, 1, 1, 23, 1]), torch.arange(6 + 40) % 16
    assert_each_take_is_its_seeds(model, context, positions, 40, options)


def test_generate_many_returns_takes_by_steps_and_refuses_a_bad_generators_list():
    assert_refuses_bad_generators(tiny_model(), torch.tensor([19, 1]), torch.arange(2 + 8) % 16)
