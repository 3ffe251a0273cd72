"""The installed models: one checkpoint folder per model under the repository's `models/` directory.

The directory is found from the package location (`<repo>/models`) unless `MUSEGEN_MODELS_DIR` names another. This
module holds no cache: callers that want one (the UI) cache `load_model` themselves.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import torch

from musegen_core.errors import CheckpointError
from musegen_core.models.checkpoint import CARD, CONFIG, load_checkpoint, read_meta

PROMOTED_FILE = "promoted.json"  # in the models directory: {"default": name, "families": {family: name}}


class MelodyModel(Protocol):
    """What generation needs from a model: sample `steps` tokens continuing a context (see `MelodyLSTM.generate`),
    optionally in one of its `styles` (an index into them; None = any style)."""

    family: str
    styles: tuple[str, ...]  # style labels it is conditioned on; () = unconditioned

    def generate(
        self,
        context: torch.Tensor,
        positions: torch.Tensor,
        steps: int,
        *,
        temperature: float = 1.0,
        top_p: float = 1.0,
        generator: torch.Generator | None = None,
        style: int | None = None,
    ) -> torch.Tensor: ...


@dataclass(frozen=True)
class ModelInfo:
    """What the model picker shows, read from a checkpoint's `config.json` without loading its weights."""

    name: str  # folder name under the models directory, e.g. "lstm-folk"
    family: str  # model family, e.g. "lstm"
    version: str  # model version, e.g. "1"
    description: str
    trained_on: tuple[str, ...]  # training corpora, each with its licence
    commercial_use_cleared: bool  # False when any training corpus forbids commercial use
    metrics: dict = field(default_factory=dict)  # held-out metrics, e.g. {"test_nll_bits_per_step": 0.9}
    card_markdown: str = field(default="", repr=False)  # the checkpoint's README.md model card
    styles: tuple[str, ...] = ()  # styles the model can be asked for (its config's `styles`); () = unconditioned

    @property
    def licence_note(self) -> str:
        """One line for the model picker and exports: may its output be used commercially, and why."""
        if self.commercial_use_cleared:
            return "Cleared for commercial use: trained on public-domain data only."
        restricted = [corpus for corpus in self.trained_on if "non-commercial" in corpus.lower()]
        return "Not cleared for commercial use" + (f": trained on {'; '.join(restricted)}." if restricted else ".")


def models_dir() -> Path:
    """`$MUSEGEN_MODELS_DIR`, else the `models/` folder at the repository root."""
    override = os.environ.get("MUSEGEN_MODELS_DIR")
    return Path(override) if override else Path(__file__).resolve().parents[2] / "models"


def promoted() -> dict[str, Any]:
    """The promotions in `models/promoted.json`: the default model and each family's promoted model.

    One small JSON file rather than a flag inside each checkpoint, so promoting or rolling back is one edit that
    never touches a checkpoint folder.
    """
    try:
        data = json.loads((models_dir() / PROMOTED_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {"default": None, "families": {}}
    return {"default": data.get("default"), "families": dict(data.get("families", {}))}


def default_model_name() -> str | None:
    """The model the app preselects and `musegen generate` uses without `--model`."""
    return promoted()["default"]


def resolve_model_name(name_or_family: str) -> str:
    """An installed model's name, or a family name ("transformer") → that family's promoted model."""
    if (models_dir() / name_or_family / CONFIG).is_file():
        return name_or_family
    return promoted()["families"].get(name_or_family, name_or_family)


def list_models() -> list[ModelInfo]:
    """Every valid checkpoint folder under `models_dir()`: the default model first (pickers preselect the first),
    then the others by name. Invalid folders are left out, and so are folders that hold no generator checkpoint
    (e.g. `style-classifier/`, whose `config.json` names no model family)."""
    root = models_dir()
    default = default_model_name()
    found = []
    folders = sorted(root.iterdir(), key=lambda f: (f.name != default, f.name)) if root.is_dir() else []
    for folder in folders:
        if (folder / CONFIG).is_file():
            try:
                found.append(model_info(folder.name))
            except CheckpointError:
                continue
    return found


def model_info(name: str) -> ModelInfo:
    """Registry facts of one installed model. Raises `CheckpointError` if it is missing or its config is bad."""
    meta = read_meta(_folder(name))
    info = meta["info"]
    return ModelInfo(
        name=name,
        family=meta["family"],
        version=str(info.get("version", "1")),
        description=str(info.get("description", "")),
        trained_on=tuple(info.get("trained_on", ())),
        commercial_use_cleared=bool(info.get("commercial_use_cleared", False)),
        metrics=dict(meta["metrics"]),
        card_markdown=_card(_folder(name)),
        styles=tuple(meta["model"].get("styles", ())),
    )


def load_model(name: str) -> MelodyModel:
    """Load an installed model (CPU, eval mode) by name or family. Raises `CheckpointError` naming what is wrong."""
    return load_checkpoint(_folder(resolve_model_name(name))).model


def _card(folder: Path) -> str:
    try:
        return (folder / CARD).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return ""


def _folder(name: str) -> Path:
    folder = models_dir() / name
    if not name or Path(name).name != name or not (folder / CONFIG).is_file():
        known = sorted(info.name for info in list_models())  # generators only (not e.g. the style classifier)
        raise CheckpointError(f"no model named {name!r} in {models_dir()} (installed: {known or 'none'})")
    return folder
