"""Checkpoints: a folder holding `model.safetensors`, `config.json` and a `README.md` model card.

`config.json` names the model family, the token-encoding version and this format's version, and holds the model
config, registry info, training details, metrics and the sha256 of the weights file. Loading checks all of them and
loads the weights strictly; every mismatch raises `CheckpointError` naming what is wrong. No pickles anywhere.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from musegen_core import encoding
from musegen_core.errors import CheckpointError
from musegen_core.hashing import file_sha256

FORMAT_VERSION = 1
WEIGHTS, CONFIG, CARD = "model.safetensors", "config.json", "README.md"
REQUIRED_KEYS = ("format_version", "family", "encoding_version", "model", "info", "training", "metrics", "sha256")


@dataclass(frozen=True)
class Checkpoint:
    """A loaded checkpoint: the model (in eval mode, on the CPU) and its parsed `config.json`."""

    model: torch.nn.Module
    meta: dict


def families() -> dict[str, tuple[type, type]]:
    """Model family name → (config class, module class). Imported here, lazily, to keep the import graph one-way."""
    from musegen_core.models import gan, lstm, transformer, vae

    return {
        lstm.FAMILY: (lstm.LSTMConfig, lstm.MelodyLSTM),
        transformer.FAMILY: (transformer.TransformerConfig, transformer.MelodyTransformer),
        vae.FAMILY: (vae.VAEConfig, vae.MelodyVAE),
        gan.FAMILY: (gan.GANConfig, gan.MelodyGAN),
    }


def save_checkpoint(
    model: torch.nn.Module,
    config: object,
    folder: Path | str,
    card_text: str,
    metrics: dict,
    *,
    info: dict | None = None,
    training: dict | None = None,
    lineage: dict | None = None,
) -> Path:
    """Write a checkpoint folder atomically (a temporary sibling folder renamed into place).

    Args:
        model: the un-compiled module (its `family` attribute names the family).
        config: the model's config dataclass (with `to_dict`).
        folder: destination; an existing checkpoint there is replaced.
        card_text: Markdown model card, written as README.md.
        metrics: held-out metrics, e.g. {"test_nll_bits_per_step": 1.23}.
        info: registry fields: description, version, trained_on, commercial_use_cleared.
        training: how it was trained (command, steps, seconds, device, ...).
        lineage: a fine-tuned version's parent, dataset and gate (written in the same atomic step, so a version
            never appears without it).

    Returns:
        The checkpoint folder.
    """
    folder = Path(folder)
    folder.parent.mkdir(parents=True, exist_ok=True)
    temporary = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=folder.parent))
    try:
        state = {name: tensor.detach().cpu().contiguous() for name, tensor in model.state_dict().items()}
        save_file(state, str(temporary / WEIGHTS), metadata={"family": model.family})
        meta = {
            "format_version": FORMAT_VERSION,
            "family": model.family,
            "encoding_version": encoding.ENCODING_VERSION,
            "model": config.to_dict(),
            "info": info or {},
            "training": training or {},
            "metrics": metrics,
            "sha256": file_sha256(temporary / WEIGHTS),
        } | ({"lineage": lineage} if lineage is not None else {})
        (temporary / CONFIG).write_text(json.dumps(meta, indent=2) + "\n")
        (temporary / CARD).write_text(card_text)
        _make_readable(temporary)
        _swap_into_place(temporary, folder)
    finally:
        shutil.rmtree(temporary, ignore_errors=True)
    return folder


def write_meta(folder: Path | str, meta: dict, card_text: str) -> None:
    """Replace a checkpoint's `config.json` and `README.md`, leaving its weights file untouched: for what is decided
    after training (a sampling setting chosen on the valid split, evaluation results, a re-timing).

    Raises:
        CheckpointError: `meta` does not describe the weights in `folder` (sha256, family) or its model config does
            not load.
    """
    folder = Path(folder)
    if not (folder / WEIGHTS).is_file() or meta.get("sha256") != file_sha256(folder / WEIGHTS):
        raise CheckpointError(f"{folder}: the new {CONFIG} must keep the sha256 of {WEIGHTS}")
    _check_versions(meta, folder / CONFIG)
    try:
        families()[meta["family"]][0].from_dict(meta["model"])
    except (TypeError, ValueError) as error:
        raise CheckpointError(f"{folder / CONFIG}: bad model config ({error})") from None
    for name, text in ((CONFIG, json.dumps(meta, indent=2) + "\n"), (CARD, card_text)):
        temporary = folder / f".{name}.new"
        temporary.write_text(text)
        temporary.chmod(0o644)
        temporary.replace(folder / name)


def _make_readable(folder: Path) -> None:
    """mkdtemp makes a private (0700) folder: a shipped checkpoint must be readable by everyone, like a git checkout."""
    folder.chmod(0o755)
    for path in folder.iterdir():
        path.chmod(0o644)


def _swap_into_place(new: Path, folder: Path) -> None:
    """Rename `new` to `folder`; an existing `folder` is moved aside first and removed only after the rename."""
    old = folder.with_name(f".{folder.name}.old")
    shutil.rmtree(old, ignore_errors=True)
    if folder.exists():
        folder.rename(old)
    new.rename(folder)
    shutil.rmtree(old, ignore_errors=True)


def read_meta(folder: Path | str) -> dict:
    """Parse and validate a checkpoint's `config.json` (without reading the weights)."""
    path = Path(folder) / CONFIG
    try:
        meta = json.loads(path.read_text())
    except FileNotFoundError:
        raise CheckpointError(f"checkpoint {folder} has no {CONFIG}") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise CheckpointError(f"{path} is not valid JSON ({error})") from None
    if not isinstance(meta, dict):
        raise CheckpointError(f"{path} must hold a JSON object")
    missing = [key for key in REQUIRED_KEYS if key not in meta]
    if missing:
        raise CheckpointError(f"{path} lacks the key(s) {missing}")
    _check_versions(meta, path)
    return meta


def _check_versions(meta: dict, path: Path) -> None:
    if meta["format_version"] != FORMAT_VERSION:
        raise CheckpointError(f"{path}: format_version {meta['format_version']} (this code reads {FORMAT_VERSION})")
    if meta["encoding_version"] != encoding.ENCODING_VERSION:
        raise CheckpointError(
            f"{path}: encoding_version {meta['encoding_version']} (this code encodes {encoding.ENCODING_VERSION}); "
            "retrain the model"
        )
    if meta["family"] not in families():
        raise CheckpointError(f"{path}: unknown model family {meta['family']!r} (known: {sorted(families())})")


def load_checkpoint(folder: Path | str) -> Checkpoint:
    """Load a checkpoint folder onto the CPU, in eval mode.

    Raises:
        CheckpointError: missing files, bad or mismatched config, weights whose sha256 differs from the config's,
            or tensors that do not match the model exactly (missing/unexpected keys or shapes are named).
    """
    folder = Path(folder)
    meta = read_meta(folder)
    weights = folder / WEIGHTS
    if not weights.is_file():
        raise CheckpointError(f"checkpoint {folder} has no {WEIGHTS}")
    if file_sha256(weights) != meta["sha256"]:
        raise CheckpointError(f"{weights}: sha256 does not match config.json (file changed or corrupted)")
    config_class, module_class = families()[meta["family"]]
    try:
        config = config_class.from_dict(meta["model"])
    except (TypeError, ValueError) as error:
        raise CheckpointError(f"{folder / CONFIG}: bad model config ({error})") from None
    model = module_class(config)
    load_state_strictly(model, weights)
    return Checkpoint(model.eval(), meta)


def load_standalone(folder: Path | str, family: str, config_class: type, module_class: type, *, encoded: bool = True):
    """Load a checkpoint written by `save_checkpoint` for a model that is not a melody generator (the style judge,
    the harmonizer: kept out of `families()`, so the registry and the model picker never list them), in eval mode.

    `encoded`: the model reads the shared token encoding, so `encoding_version` must match too.

    Raises:
        CheckpointError: missing files, another family or format, a bad config, or weights that do not match
            config.json (sha256, keys, shapes).
    """
    folder = Path(folder)
    try:
        meta = json.loads((folder / CONFIG).read_text())
        config = config_class.from_dict(meta["model"])
        model = module_class(config)
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise CheckpointError(f"no readable {family} in {folder} ({error})") from None
    expected = {"family": family, "format_version": FORMAT_VERSION}
    expected |= {"encoding_version": encoding.ENCODING_VERSION} if encoded else {}
    wrong = {key: meta.get(key) for key, value in expected.items() if meta.get(key) != value}
    if wrong:
        raise CheckpointError(f"{folder / CONFIG} does not match this code ({wrong}); retrain the {family}")
    if not (folder / WEIGHTS).is_file() or file_sha256(folder / WEIGHTS) != meta.get("sha256"):
        raise CheckpointError(f"{folder / WEIGHTS} is missing or does not match config.json's sha256")
    load_state_strictly(model, folder / WEIGHTS)
    return model.eval()


def load_state_strictly(model: torch.nn.Module, weights: Path) -> None:
    """Load safetensors `weights` into `model`, refusing missing or unexpected keys and wrong shapes by name."""
    try:
        state = load_file(str(weights), device="cpu")
    except (SafetensorError, OSError) as error:
        raise CheckpointError(f"{weights} cannot be read as safetensors ({error})") from None
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    if missing or unexpected:
        raise CheckpointError(
            f"{weights} does not match the model: missing keys {missing}, unexpected keys {unexpected}"
        )
    wrong = [
        f"{k} {tuple(state[k].shape)} ≠ {tuple(v.shape)}" for k, v in expected.items() if v.shape != state[k].shape
    ]
    if wrong:
        raise CheckpointError(f"{weights} has tensors of the wrong shape: {', '.join(wrong)}")
    model.load_state_dict(state, strict=True)
