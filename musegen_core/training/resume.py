"""Resume checkpoints: everything a training run needs to go on exactly where it stopped, without pickles.

A resume folder holds `resume-<step>.safetensors` — the model's weights (`model.*`), the best-by-validation weights so
far (`best.*`), the optimiser's state tensors flattened to `optimizer.<parameter index>.<name>`, and the torch RNG
states (`rng.cpu`, `rng.cuda`) — and `resume.json`: the step, the history, the best validation score, the numpy
generator state, the optimiser's parameter groups, the LR schedule state, the run's settings (a resumed run must use
the same ones), the name of its tensors file and that file's sha256. Each file is written to a temporary name and
renamed into place, the JSON last, and the previous step's tensors are deleted only after that: a run killed at any
moment while saving leaves the previous complete pair (the tensors file is per step, so the new one never replaces
the file the old JSON names).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from musegen_core.hashing import file_sha256

TENSORS, STATE = "resume.safetensors", "resume.json"  # TENSORS: the name before per-step files


@dataclass
class Progress:
    """Where a run stands: the last finished step, validation history and the best weights so far."""

    step: int = 0
    best: float = float("inf")  # best validation bits/step so far
    best_state: dict[str, torch.Tensor] | None = None
    history: list[dict] = field(default_factory=list)
    train_seconds: float = 0.0  # optimisation time of this and earlier (interrupted) sessions


def save(
    folder: Path,
    progress: Progress,
    model: torch.nn.Module,
    optimiser: torch.optim.Optimizer,
    schedule: torch.optim.lr_scheduler.LRScheduler,
    rng: np.random.Generator,
    settings: dict,
) -> None:
    """Write the resume pair for the state after `progress.step` (see the module docstring)."""
    folder.mkdir(parents=True, exist_ok=True)
    tensors = {f"model.{k}": v for k, v in model.state_dict().items()}
    tensors |= {f"best.{k}": v for k, v in (progress.best_state or {}).items()}
    optimiser_state = optimiser.state_dict()
    for index, values in optimiser_state["state"].items():
        tensors |= {f"optimizer.{index}.{name}": value for name, value in values.items()}
    tensors["rng.cpu"] = torch.get_rng_state()
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        tensors["rng.cuda"] = torch.cuda.get_rng_state()
    name = f"resume-{progress.step:08d}.safetensors"
    temporary = folder / f".{name}.tmp"
    save_file({k: v.detach().cpu().contiguous() for k, v in tensors.items()}, str(temporary))
    os.replace(temporary, folder / name)
    state = {
        "step": progress.step,
        "best": progress.best,
        "history": progress.history,
        "train_seconds": progress.train_seconds,
        "numpy_rng": rng.bit_generator.state,
        "param_groups": optimiser_state["param_groups"],
        "schedule": schedule.state_dict(),
        "settings": settings,
        "tensors": name,
        "sha256": file_sha256(folder / name),
    }
    (folder / f".{STATE}.tmp").write_text(json.dumps(state, indent=1))
    os.replace(folder / f".{STATE}.tmp", folder / STATE)
    for old in [folder / TENSORS, *folder.glob("resume-*.safetensors")]:
        if old.name != name:
            old.unlink(missing_ok=True)


def load(
    folder: Path,
    model: torch.nn.Module,
    optimiser: torch.optim.Optimizer,
    schedule: torch.optim.lr_scheduler.LRScheduler,
    rng: np.random.Generator,
    settings: dict,
) -> Progress:
    """Restore model, optimiser, schedule and every RNG from `folder` in place; returns the progress.

    Raises:
        SystemExit: no resume checkpoint there, a damaged one, or one written with other settings (named).
    """
    try:
        state = json.loads((folder / STATE).read_text())
    except FileNotFoundError:
        raise SystemExit(f"--resume: no resume checkpoint in {folder} (no {STATE})") from None
    tensors_file = folder / state.get("tensors", TENSORS)
    if not tensors_file.is_file() or file_sha256(tensors_file) != state["sha256"]:
        raise SystemExit(f"--resume: {tensors_file} does not match {STATE} (interrupted write?)")
    changed = sorted(
        k for k in settings.keys() | state["settings"].keys() if settings.get(k) != state["settings"].get(k)
    )
    if changed:
        was = {k: state["settings"].get(k) for k in changed}
        raise SystemExit(f"--resume: settings differ from the interrupted run's {was}: {changed}")
    tensors = load_file(str(tensors_file), device="cpu")
    model.load_state_dict(_section(tensors, "model"))
    optimiser.load_state_dict({"state": _optimiser_state(tensors), "param_groups": state["param_groups"]})
    schedule.load_state_dict(state["schedule"])
    rng.bit_generator.state = state["numpy_rng"]
    torch.set_rng_state(tensors["rng.cpu"])
    if "rng.cuda" in tensors and torch.cuda.is_available():
        torch.cuda.set_rng_state(tensors["rng.cuda"])
    best = _section(tensors, "best") or None
    device = next(model.parameters()).device
    best = {k: v.to(device) for k, v in best.items()} if best else None
    return Progress(state["step"], state["best"], best, state["history"], state["train_seconds"])


def _section(tensors: dict[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    return {k[len(prefix) + 1 :]: v for k, v in tensors.items() if k.startswith(prefix + ".")}


def _optimiser_state(tensors: dict[str, torch.Tensor]) -> dict[int, dict[str, torch.Tensor]]:
    state: dict[int, dict[str, torch.Tensor]] = {}
    for key, value in _section(tensors, "optimizer").items():
        index, name = key.split(".", 1)
        state.setdefault(int(index), {})[name] = value
    return state
