"""The installed models: shipped checkpoints (read-only) and fine-tuned versions (writable), and their promotions.

**Shipped** models are checkpoint folders under the repository's `models/` directory (found from the package
location unless `MUSEGEN_MODELS_DIR` names another); nothing here ever writes there. **Fine-tuned versions**
(`musegen finetune`, `training/finetune.py`) are checkpoint folders in the *user models directory*,
`$MUSEGEN_USER_MODELS_DIR`, else `<data dir>/models` where the data dir is the feedback store's
(`$MUSEGEN_DATA_DIR`, else `$XDG_DATA_HOME/musegen`, else `~/.local/share/musegen`). `list_models()` lists both
(a shipped name wins a clash); a version's `config.json` holds its lineage (`ModelInfo.lineage`).

**Promotion** (which model each family and the app's default use) starts from the shipped `models/promoted.json`;
`promote(name)` and `rollback(family)` write `promoted.json` in the user models directory, which overrides it and
keeps a stack of promotions per family (what `rollback` undoes) and an append-only history. Both files are read on
every call, so a new version or a promotion is visible to the next request without a restart (the app's 60 s cache
of `list_models()` only delays a new version's appearance in the picker; clear it after a fine-tune).

This module holds no cache: callers that want one (the UI) cache `load_model` themselves.
"""

from __future__ import annotations

import contextlib
import datetime
import fcntl
import json
import os
import shutil
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import torch

from musegen_core.errors import CheckpointError, MusegenError
from musegen_core.models.checkpoint import CARD, CONFIG, load_checkpoint, read_meta
from musegen_core.models.style import Style

PROMOTED_FILE = "promoted.json"  # in the models directory: {"default": name, "families": {family: name}}
USER_MODELS_ENV = "MUSEGEN_USER_MODELS_DIR"
DATA_DIR_ENV = "MUSEGEN_DATA_DIR"  # the feedback store's data directory (`feedback.store.default_data_dir`)
LOCK_FILE = ".registry.lock"  # serialises promotions and the naming of new versions in the user models directory


class MelodyModel(Protocol):
    """What generation needs from a model: sample `steps` tokens continuing a context (see `MelodyLSTM.generate`),
    optionally in one of its `styles` (an index into them; None = any style) — one take, or several at once, one
    per generator (`generate_many`, (takes, steps); take i is what `generate` gives with generator i)."""

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
        style: Style = None,
        steering: torch.Tensor | None = None,
        guidance: float = 1.0,
    ) -> torch.Tensor: ...

    def generate_many(
        self,
        context: torch.Tensor,
        positions: torch.Tensor,
        steps: int,
        *,
        generators: Sequence[torch.Generator | None],
        temperature: float = 1.0,
        top_p: float = 1.0,
        style: Style = None,
        steering: torch.Tensor | None = None,
        guidance: float = 1.0,
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
    source: str = "shipped"  # "shipped" (read-only, in the repository) or "user" (a fine-tuned version)
    lineage: dict = field(default_factory=dict, repr=False)  # fine-tuned versions: parent, dataset, config, gate

    @property
    def parent(self) -> str | None:
        """`name@version` of the model this version was fine-tuned from (None for a model trained from scratch)."""
        parent = self.lineage.get("parent")
        return f"{parent['name']}@{parent['version']}" if parent else None

    @property
    def gate_passed(self) -> bool | None:
        """Whether this fine-tuned version passed its validation gate (None: no gate was run, or not fine-tuned)."""
        gate = self.lineage.get("gate") or {}
        return gate.get("passed")

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


def shipped_folder(name: str) -> Path:
    """Folder `name` in the models directory, else in the repository's `models/` — for the models that ship with the
    code rather than being picked (style judge, harmonizer): an operator's own models directory need not copy them."""
    folder = models_dir() / name
    return folder if (folder / CONFIG).is_file() else Path(__file__).resolve().parents[2] / "models" / name


def user_models_dir() -> Path:
    """Where fine-tuned versions and the user's promotions live: `$MUSEGEN_USER_MODELS_DIR`, else `models/` in the
    data directory (`$MUSEGEN_DATA_DIR`, else `$XDG_DATA_HOME/musegen`, else `~/.local/share/musegen`: the same
    rule as `feedback.store.default_data_dir`, repeated here so that the registry does not import the database)."""
    override = os.environ.get(USER_MODELS_ENV)
    if override:
        return Path(override)
    if os.environ.get(DATA_DIR_ENV):
        return Path(os.environ[DATA_DIR_ENV]) / "models"
    xdg = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(xdg) / "musegen" / "models"


def _read_json(path: Path) -> dict:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def promoted() -> dict[str, Any]:
    """The promotions in effect: the default model and each family's promoted model.

    The shipped `models/promoted.json`, overridden entry by entry by the user models directory's `promoted.json`
    (written by `promote`/`rollback`). Small JSON files rather than a flag inside each checkpoint, so promoting or
    rolling back is one edit that never touches a checkpoint folder. Read afresh on every call.
    """
    shipped = _read_json(models_dir() / PROMOTED_FILE)
    user = _read_json(user_models_dir() / PROMOTED_FILE)
    families = dict(shipped.get("families", {})) | dict(user.get("families", {}))
    return {"default": user.get("default") or shipped.get("default"), "families": families}


def default_model_name() -> str | None:
    """The model the app preselects and `musegen generate` uses without `--model`."""
    return promoted()["default"]


def resolve_model_name(name_or_family: str) -> str:
    """An installed model's name, or a family name ("transformer") → that family's promoted model."""
    if _find(name_or_family) is not None:
        return name_or_family
    return promoted()["families"].get(name_or_family, name_or_family)


def list_models() -> list[ModelInfo]:
    """Every valid checkpoint folder under `models_dir()` and `user_models_dir()`: the default model first (pickers
    preselect the first), then the others by name. Invalid folders are left out, and so are folders that hold no
    generator checkpoint (e.g. `style-classifier/`, whose `config.json` names no model family) and hidden ones
    (checkpoints being written, resume points)."""
    default = default_model_name()
    names = sorted({*_folder_names(models_dir()), *_folder_names(user_models_dir())}, key=lambda n: (n != default, n))
    found = []
    for name in names:
        try:
            found.append(model_info(name))
        except CheckpointError:
            continue
    return found


def _folder_names(root: Path) -> list[str]:
    if not root.is_dir():
        return []
    return [f.name for f in root.iterdir() if not f.name.startswith(".") and (f / CONFIG).is_file()]


def model_info(name: str) -> ModelInfo:
    """Registry facts of one installed model. Raises `CheckpointError` if it is missing or its config is bad."""
    folder = _folder(name)
    meta = read_meta(folder)
    info = meta["info"]
    return ModelInfo(
        name=name,
        family=meta["family"],
        version=str(info.get("version", "1")),
        description=str(info.get("description", "")),
        trained_on=tuple(info.get("trained_on", ())),
        commercial_use_cleared=bool(info.get("commercial_use_cleared", False)),
        metrics=dict(meta["metrics"]),
        card_markdown=_card(folder),
        styles=tuple(meta["model"].get("styles", ())),
        source="shipped" if folder.parent == models_dir() else "user",
        lineage=dict(meta.get("lineage") or {}),
    )


def model_folder(name: str) -> Path:
    """The checkpoint folder of an installed model (shipped or user). Raises `CheckpointError` if there is none."""
    return _folder(name)


def load_model(name: str) -> MelodyModel:
    """Load an installed model (CPU, eval mode) by name or family. Raises `CheckpointError` naming what is wrong."""
    return load_checkpoint(_folder(resolve_model_name(name))).model


def _card(folder: Path) -> str:
    try:
        return (folder / CARD).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return ""


def _find(name: str) -> Path | None:
    """The folder of model `name`: shipped first, then the user models directory; None if neither has it."""
    if not name or Path(name).name != name or name.startswith("."):
        return None
    for root in (models_dir(), user_models_dir()):
        if (root / name / CONFIG).is_file():
            return root / name
    return None


def _folder(name: str) -> Path:
    folder = _find(name)
    if folder is None:
        known = sorted(info.name for info in list_models())  # generators only (not e.g. the style classifier)
        raise CheckpointError(f"no model named {name!r} in {models_dir()} (installed: {known or 'none'})")
    return folder


# ---------------------------------------------------------------------------------------------------------------
# Promotion, rollback and versions (admin actions: the UI must check the admin secret before calling these)


@contextlib.contextmanager
def registry_lock() -> Iterator[Path]:
    """An exclusive lock on the user models directory (created if missing): one promotion, rollback or new version
    name at a time, across processes. Yields the directory."""
    root = user_models_dir()
    root.mkdir(parents=True, exist_ok=True)
    with (root / LOCK_FILE).open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield root
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _write_state(root: Path, state: dict) -> None:
    temporary = root / f".{PROMOTED_FILE}.tmp"
    temporary.write_text(json.dumps(state, indent=2) + "\n", encoding="utf-8")
    os.replace(temporary, root / PROMOTED_FILE)


def _now() -> str:
    return datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")


def promote(name: str, *, force: bool = False, make_default: bool | None = None, by: str = "") -> dict[str, Any]:
    """Make model `name` its family's promoted model (what `--model FAMILY` and the app's family pick use).

    Args:
        name: an installed model (shipped, or a fine-tuned version).
        force: promote a fine-tuned version that failed its validation gate or was never gated (otherwise
            refused; shipped models need no gate).
        make_default: True also makes it the app's default model, False never; None (the default) moves the
            default along when the default was this family's promoted model.
        by: who asked (recorded in the history; e.g. "cli" or an admin's name).

    Returns:
        The promotions now in effect (`promoted()`).

    Raises:
        CheckpointError: no such model. MusegenError: a fine-tuned version without a passed gate, `force` off.
    """
    info = model_info(name)
    if info.lineage.get("parent") and info.gate_passed is not True and not force:
        gate = info.lineage.get("gate") or {}
        why = "; ".join(gate.get("reasons", [])) if gate else "the gate was not run"
        raise MusegenError(f"{name} did not pass its validation gate ({why}); promote it with force to override")
    with registry_lock() as root:
        state = _read_json(root / PROMOTED_FILE)
        before = promoted()
        previous, default_before = before["families"].get(info.family), before["default"]
        move = make_default if make_default is not None else default_before in (None, previous)
        default_after = name if move else default_before
        entry = {
            "action": "promote", "family": info.family, "name": name, "version": info.version, "previous": previous,
            "default_before": default_before, "default_after": default_after, "at": _now(), "by": by,
        }  # fmt: skip
        if previous == name and default_after == default_before:
            return before  # nothing changes: no history entry
        state.setdefault("families", {})[info.family] = name
        state["default"] = default_after
        state.setdefault("stacks", {}).setdefault(info.family, []).append(entry)
        state.setdefault("history", []).append(entry)
        _write_state(root, state)
    return promoted()


def rollback(family: str, *, by: str = "") -> dict[str, Any]:
    """Undo the family's latest promotion still in effect: its previous model comes back (and the default, where
    that promotion had moved it). Once every promotion is undone the shipped `promoted.json` applies again.

    Returns:
        The promotions now in effect. Raises MusegenError when the family has nothing to roll back.
    """
    with registry_lock() as root:
        state = _read_json(root / PROMOTED_FILE)
        stack = state.get("stacks", {}).get(family) or []
        if not stack:
            shipped = _read_json(models_dir() / PROMOTED_FILE).get("families", {}).get(family)
            raise MusegenError(f"nothing to roll back for family {family!r}: it uses the shipped model {shipped!r}")
        undone = stack.pop()
        if stack:
            state["families"][family] = stack[-1]["name"]
        else:
            state.get("families", {}).pop(family, None)
        if state.get("default") == undone["name"]:
            shipped_default = _read_json(models_dir() / PROMOTED_FILE).get("default")
            restored = undone["default_before"]
            state["default"] = None if restored == shipped_default else restored
        state.setdefault("history", []).append(
            {"action": "rollback", "family": family, "name": undone["name"], "at": _now(), "by": by}
        )
        _write_state(root, state)
    return promoted()


def promotion_history(family: str | None = None) -> list[dict[str, Any]]:
    """Every promotion and rollback, oldest first (one family's, or all)."""
    history = _read_json(user_models_dir() / PROMOTED_FILE).get("history", [])
    return [entry for entry in history if family is None or entry.get("family") == family]


def versions(base: str) -> list[ModelInfo]:
    """The shipped model `base` and every version fine-tuned from it (directly or from one of its versions), by
    version number."""
    found = [info for info in list_models() if info.name == base or info.lineage.get("base") == base]
    return sorted(found, key=lambda info: (_version_number(info.version), info.name))


def next_version(base: str) -> int:
    """The next free version number in the lineage of `base`: 1 + the highest so far, deleted versions included (a
    number is never given twice, so a name always means the same weights, also to caches keyed by name)."""
    numbers = [_version_number(info.version) for info in versions(base)]
    deleted = _read_json(user_models_dir() / PROMOTED_FILE).get("deleted", [])
    numbers += [_version_number(entry["version"]) for entry in deleted if entry.get("base") == base]
    return max(numbers, default=0) + 1


def _version_number(version: str) -> int:
    try:
        return int(str(version).split(".")[0])
    except ValueError:
        return 0


def delete_version(name: str) -> None:
    """Delete a fine-tuned version (never a shipped model, never one in use as a family's model or the default).

    Raises:
        CheckpointError: no such model. MusegenError: it is shipped or in use.
    """
    folder = _folder(name)
    if folder.parent != user_models_dir():
        raise MusegenError(f"{name} is a shipped model: only fine-tuned versions can be deleted")
    info = model_info(name)
    with registry_lock() as root:
        current = promoted()
        if name == current["default"] or name in current["families"].values():
            raise MusegenError(f"{name} is in use (promoted or default): promote another model or roll back first")
        state = _read_json(root / PROMOTED_FILE)
        entry = {"name": name, "version": info.version, "base": info.lineage.get("base", name), "at": _now()}
        state.setdefault("deleted", []).append(entry)
        _write_state(root, state)
        shutil.rmtree(folder)
