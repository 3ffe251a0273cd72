"""The model registry's versions and promotions: shipped models read-only, fine-tuned versions and the promotion
state in the user models directory, promote / rollback with a history, and visibility without a restart."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from musegen_core.errors import CheckpointError, MusegenError
from musegen_core.models import checkpoint, registry
from musegen_core.models.lstm import PRESETS, MelodyLSTM
from musegen_core.models.transformer import PRESETS as TRANSFORMER_PRESETS
from musegen_core.models.transformer import MelodyTransformer

SHIPPED_PROMOTED = {"default": "lstm-a", "families": {"lstm": "lstm-a", "transformer": "tf-a"}}


def save(root: Path, name: str, *, lineage: dict | None = None, transformer: bool = False, version: str = "1"):
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        config = TRANSFORMER_PRESETS["transformer-tiny"] if transformer else PRESETS["lstm-tiny"]
        model = (MelodyTransformer if transformer else MelodyLSTM)(config)
    folder = checkpoint.save_checkpoint(model, config, root / name, f"# {name}\n", {}, info={"version": version})
    if lineage is not None:
        meta = checkpoint.read_meta(folder)
        checkpoint.write_meta(folder, meta | {"lineage": lineage}, f"# {name}\n")
    return folder


def version_of(parent: str, passed: bool | None, base: str = "lstm-a") -> dict:
    gate = None if passed is None else {"passed": passed, "reasons": [] if passed else ["held-out NLL rose +9%"]}
    return {"base": base, "parent": {"name": parent, "version": "1", "sha256": "0" * 64}, "gate": gate}


@pytest.fixture
def dirs(tmp_path, monkeypatch):
    shipped, user = tmp_path / "shipped", tmp_path / "user"
    for name in ("lstm-a", "lstm-b"):
        save(shipped, name)
    save(shipped, "tf-a", transformer=True)
    (shipped / "promoted.json").write_text(json.dumps(SHIPPED_PROMOTED))
    monkeypatch.setenv("MUSEGEN_MODELS_DIR", str(shipped))
    monkeypatch.setenv("MUSEGEN_USER_MODELS_DIR", str(user))
    return shipped, user


def snapshot(folder: Path) -> dict:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_versions_in_the_user_directory_are_listed_with_their_lineage_at_once(dirs):
    user = dirs[1]
    assert [i.name for i in registry.list_models()] == ["lstm-a", "lstm-b", "tf-a"]
    save(user, "lstm-a-v2", lineage=version_of("lstm-a", True), version="2")
    (user / ".lstm-a-v3.tmp123").mkdir()  # a checkpoint being written
    (user / ".lstm-a-v3.tmp123" / "config.json").write_text("{}")
    infos = {i.name: i for i in registry.list_models()}  # no cache: the new version is there on the next call
    assert list(infos) == ["lstm-a", "lstm-a-v2", "lstm-b", "tf-a"]
    version = infos["lstm-a-v2"]
    assert (version.source, version.version, version.parent, version.gate_passed) == ("user", "2", "lstm-a@1", True)
    assert infos["lstm-a"].source == "shipped" and infos["lstm-a"].lineage == {} and infos["lstm-a"].parent is None
    assert registry.model_folder("lstm-a-v2") == user / "lstm-a-v2"
    assert isinstance(registry.load_model("lstm-a-v2"), MelodyLSTM)
    assert [i.name for i in registry.versions("lstm-a")] == ["lstm-a", "lstm-a-v2"]
    assert registry.next_version("lstm-a") == 3 and registry.next_version("lstm-b") == 2
    with pytest.raises(CheckpointError, match="no model named"):
        registry.load_model(".lstm-a-v3.tmp123")


def test_a_shipped_name_wins_over_a_user_folder_of_the_same_name(dirs):
    shipped, user = dirs
    save(user, "lstm-b", transformer=True)
    assert registry.model_folder("lstm-b") == shipped / "lstm-b" and registry.model_info("lstm-b").family == "lstm"


def test_promote_and_rollback_keep_a_stack_per_family_and_never_touch_the_shipped_folder(dirs):
    shipped, user = dirs
    before = snapshot(shipped)
    save(user, "lstm-a-v2", lineage=version_of("lstm-a", True), version="2")
    save(user, "lstm-a-v3", lineage=version_of("lstm-a-v2", True), version="3")
    state = registry.promote("lstm-a-v2", by="alice")
    assert state == {"default": "lstm-a-v2", "families": {"lstm": "lstm-a-v2", "transformer": "tf-a"}}
    assert registry.resolve_model_name("lstm") == "lstm-a-v2"  # read per call: visible at once
    assert registry.list_models()[0].name == "lstm-a-v2"  # the default comes first
    registry.promote("lstm-a-v3")
    registry.promote("lstm-b")  # a shipped model can be promoted too (no gate needed)
    assert registry.promoted()["families"]["lstm"] == "lstm-b" and registry.default_model_name() == "lstm-b"
    assert registry.rollback("lstm")["families"]["lstm"] == "lstm-a-v3"
    assert registry.default_model_name() == "lstm-a-v3"  # the default followed its family back
    registry.rollback("lstm")
    assert registry.resolve_model_name("lstm") == "lstm-a-v2"
    registry.rollback("lstm")
    assert registry.promoted() == SHIPPED_PROMOTED  # every promotion undone: the shipped file applies again
    with pytest.raises(MusegenError, match="nothing to roll back for family 'lstm': it uses the shipped model"):
        registry.rollback("lstm")
    history = registry.promotion_history("lstm")
    assert [(h["action"], h["name"]) for h in history] == [
        ("promote", "lstm-a-v2"), ("promote", "lstm-a-v3"), ("promote", "lstm-b"),
        ("rollback", "lstm-b"), ("rollback", "lstm-a-v3"), ("rollback", "lstm-a-v2"),
    ]  # fmt: skip
    assert history[0]["by"] == "alice" and history[0]["previous"] == "lstm-a"
    assert snapshot(shipped) == before


def test_promoting_another_family_leaves_the_default_alone_unless_asked(dirs):
    registry.promote("lstm-b", make_default=False)
    assert registry.default_model_name() == "lstm-a" and registry.resolve_model_name("lstm") == "lstm-b"
    save(dirs[1], "tf-a-v2", lineage=version_of("tf-a", True, base="tf-a"), transformer=True, version="2")
    registry.promote("tf-a-v2")
    assert registry.default_model_name() == "lstm-a"  # the default is an LSTM: a Transformer promotion keeps it
    registry.promote("tf-a-v2", make_default=True)
    assert registry.default_model_name() == "tf-a-v2"
    registry.rollback("transformer")  # undoes the latest promotion, the one that moved the default
    assert registry.default_model_name() == "lstm-a" and registry.resolve_model_name("transformer") == "tf-a-v2"
    registry.rollback("transformer")
    assert registry.promoted()["families"] == {"lstm": "lstm-b", "transformer": "tf-a"}


def test_versions_without_a_passed_gate_need_force(dirs):
    user = dirs[1]
    save(user, "failed", lineage=version_of("lstm-a", False))
    save(user, "ungated", lineage=version_of("lstm-a", None))
    with pytest.raises(MusegenError, match=r"failed did not pass its validation gate \(held-out NLL rose \+9%\)"):
        registry.promote("failed")
    with pytest.raises(MusegenError, match="the gate was not run"):
        registry.promote("ungated")
    assert registry.promoted() == SHIPPED_PROMOTED
    registry.promote("failed", force=True)
    assert registry.resolve_model_name("lstm") == "failed"
    with pytest.raises(CheckpointError, match="no model named 'nope'"):
        registry.promote("nope")


def test_delete_removes_only_unused_fine_tuned_versions(dirs):
    user = dirs[1]
    save(user, "lstm-a-v2", lineage=version_of("lstm-a", True), version="2")
    with pytest.raises(MusegenError, match="shipped model"):
        registry.delete_version("lstm-a")
    registry.promote("lstm-a-v2")
    with pytest.raises(MusegenError, match="in use"):
        registry.delete_version("lstm-a-v2")
    registry.rollback("lstm")
    registry.delete_version("lstm-a-v2")
    assert not (user / "lstm-a-v2").exists()
    assert [i.name for i in registry.list_models()] == ["lstm-a", "lstm-b", "tf-a"]
    assert registry.next_version("lstm-a") == 3  # a deleted version's number is never given again


def test_the_user_models_directory_follows_the_feedback_stores_data_directory(monkeypatch, tmp_path):
    from musegen_core.feedback.store import default_data_dir

    monkeypatch.delenv("MUSEGEN_USER_MODELS_DIR", raising=False)
    for data_dir, xdg in ((str(tmp_path / "data"), None), (None, str(tmp_path / "xdg")), (None, None)):
        for name, value in (("MUSEGEN_DATA_DIR", data_dir), ("XDG_DATA_HOME", xdg)):
            if value is None:
                monkeypatch.delenv(name, raising=False)
            else:
                monkeypatch.setenv(name, value)
        assert registry.user_models_dir() == default_data_dir() / "models"
    monkeypatch.setenv("MUSEGEN_USER_MODELS_DIR", str(tmp_path / "elsewhere"))
    assert registry.user_models_dir() == tmp_path / "elsewhere"
