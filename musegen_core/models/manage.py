"""`musegen models`: list the installed models and versions, promote, roll back, gate and delete versions.

    musegen models list [--json]                 every model: family, version, shipped/user, parent, gate, promoted
    musegen models promote NAME [--force] [--default | --no-default]
    musegen models rollback FAMILY               undo the family's latest promotion still in effect
    musegen models history [--family F]          promotions and rollbacks, oldest first
    musegen models gate NAME [--max-test-tunes N] [--promote]   re-run a fine-tuned version's validation gate
    musegen models delete NAME                   a fine-tuned version that is not in use

Promote, rollback, gate and delete are admin actions: on a shared server only whoever runs this command on it (or
the app's admin) may; see `models/registry.py` for where the state lives.
"""

from __future__ import annotations

import argparse
import json

from musegen_core.models import registry


def add_arguments(parser: argparse.ArgumentParser) -> None:
    commands = parser.add_subparsers(dest="models_command", required=True)
    listing = commands.add_parser("list", help="every installed model and fine-tuned version")
    listing.add_argument("--json", action="store_true", help="print JSON instead of a table")
    listing.set_defaults(run=_list)

    promote = commands.add_parser("promote", help="make a model its family's promoted model")
    promote.add_argument("name")
    promote.add_argument("--force", action="store_true", help="promote a version whose gate failed or never ran")
    default_help = "also make it the app's default (default: when the default was this family's model)"
    promote.add_argument("--default", dest="make_default", default=None, action=argparse.BooleanOptionalAction,
                         help=default_help)  # fmt: skip
    promote.set_defaults(run=_promote)

    rollback = commands.add_parser("rollback", help="undo a family's latest promotion")
    rollback.add_argument("family")
    rollback.set_defaults(run=_rollback)

    history = commands.add_parser("history", help="promotions and rollbacks, oldest first")
    history.add_argument("--family", default=None)
    history.set_defaults(run=_history)

    gate = commands.add_parser("gate", help="re-run a fine-tuned version's validation gate")
    gate.add_argument("name")
    gate.add_argument("--dataset", default=None, help="feedback dataset (default: the one in its lineage)")
    gate.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    gate.add_argument("--max-test-tunes", type=int, default=None, help="score at most this many test tunes")
    gate.add_argument("--collections", default=None, help="comma list of corpora (default: the parent's)")
    gate.add_argument("--cache-only", action="store_true", help="read the corpus from its caches only")
    gate.add_argument("--max-tunes", type=int, default=None, help="per collection, for quick tests")
    gate.add_argument("--promote", action="store_true", help="promote it if it passes")
    gate.set_defaults(run=_gate)

    delete = commands.add_parser("delete", help="delete a fine-tuned version that is not in use")
    delete.add_argument("name")
    delete.set_defaults(run=_delete)


def _list(args: argparse.Namespace) -> int:
    current = registry.promoted()
    promoted_names = set(current["families"].values())
    rows = [
        {"name": info.name, "family": info.family, "version": info.version, "source": info.source,
         "parent": info.parent, "gate": {True: "passed", False: "failed", None: "—"}[info.gate_passed],
         "promoted": info.name in promoted_names, "default": info.name == current["default"]}
        for info in registry.list_models()
    ]  # fmt: skip
    if args.json:
        print(json.dumps({"models": rows, "promoted": current}, indent=2))
        return 0
    print(f"{'name':28} {'family':12} {'version':>7}  {'source':8} {'parent':24} {'gate':7} in use")
    for row in rows:
        use = ", ".join(x for x, on in (("promoted", row["promoted"]), ("default", row["default"])) if on)
        print(f"{row['name']:28} {row['family']:12} {row['version']:>7}  {row['source']:8} "
              f"{row['parent'] or '—':24} {row['gate']:7} {use}")  # fmt: skip
    return 0


def _show(current: dict) -> None:
    families = ", ".join(f"{family}: {name}" for family, name in sorted(current["families"].items()))
    print(f"default: {current['default']}; {families}")


def _promote(args: argparse.Namespace) -> int:
    _show(registry.promote(args.name, force=args.force, make_default=args.make_default, by="cli"))
    return 0


def _rollback(args: argparse.Namespace) -> int:
    _show(registry.rollback(args.family, by="cli"))
    return 0


def _history(args: argparse.Namespace) -> int:
    for entry in registry.promotion_history(args.family):
        detail = f" (was {entry.get('previous')})" if entry["action"] == "promote" else ""
        print(f"{entry['at']} {entry['action']:8} {entry['family']:12} {entry['name']}{detail} by {entry.get('by')}")
    return 0


def _gate(args: argparse.Namespace) -> int:
    from musegen_core.training.finetune import gate

    verdict = gate(args.name, dataset=args.dataset, device=args.device, max_test_tunes=args.max_test_tunes,
                   collections=args.collections, cache_only=args.cache_only, max_tunes=args.max_tunes,
                   promote=args.promote)  # fmt: skip
    print(f"{args.name}: gate {'passed' if verdict.passed else 'failed: ' + '; '.join(verdict.reasons)}"
          f"{'; promoted' if verdict.promoted else ''}")  # fmt: skip
    return 0 if verdict.passed else 3


def _delete(args: argparse.Namespace) -> int:
    registry.delete_version(args.name)
    print(f"deleted {args.name}")
    return 0
