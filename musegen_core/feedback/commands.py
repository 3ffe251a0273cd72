"""`musegen feedback ...`: the feedback database from a shell.

    musegen feedback export OUT/ [--rater-cap 50] [--force] [--db URL]   the dataset folder (see feedback.export)
    musegen feedback stats [--json] [--db URL]                           counts, ratings per model, win rates
    musegen feedback upgrade [--db URL]                                  migrate the database to the newest schema

`--db` defaults to `MUSEGEN_DB_URL`, else the SQLite file in the data directory. SQLAlchemy is imported only when
one of these runs.
"""

from __future__ import annotations

import argparse
import json
from collections import defaultdict
from pathlib import Path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    commands = parser.add_subparsers(dest="feedback_command", required=True)
    export = commands.add_parser("export", help="write the ratings and pair votes as a dataset folder")
    export.add_argument("out", type=Path, help="folder to write (must be empty, or an earlier export with --force)")
    export.add_argument("--rater-cap", type=int, default=None, help="effective records per rater (default 50)")
    export.add_argument("--force", action="store_true", help="replace an earlier export in OUT")
    export.add_argument("--json", action="store_true", help="print the manifest as JSON")
    export.set_defaults(run=_export)

    stats = commands.add_parser("stats", help="counts, ratings per model version and style, win rates")
    stats.add_argument("--json", action="store_true", help="print JSON instead of text")
    stats.set_defaults(run=_stats)

    upgrade = commands.add_parser("upgrade", help="migrate the feedback database to the newest schema")
    upgrade.set_defaults(run=_upgrade)
    for sub in (export, stats, upgrade):
        sub.add_argument("--db", default=None, help="SQLAlchemy URL (default: MUSEGEN_DB_URL or the SQLite file)")


def _store(args: argparse.Namespace):  # type: ignore[no-untyped-def]
    from musegen_core.feedback.store import FeedbackStore

    return FeedbackStore(args.db)


def _export(args: argparse.Namespace) -> int:
    from musegen_core.feedback.export import DEFAULT_RATER_CAP, export_dataset

    store = _store(args)
    try:
        cap = DEFAULT_RATER_CAP if args.rater_cap is None else args.rater_cap
        manifest = export_dataset(store, args.out, rater_cap=cap, force=args.force)
    finally:
        store.dispose()
    if args.json:
        print(json.dumps({"ok": True, **manifest}, sort_keys=True))
    else:
        counts = manifest["counts"]
        print(
            f"wrote {args.out}: {counts['ratings']} ratings, {counts['pairs']} pairs "
            f"({counts['skipped_pairs_excluded']} skips left out), {counts['pieces']} pieces, "
            f"{counts['raters']} raters; rater cap {cap}; content sha256 {manifest['content_sha256']}"
        )
    return 0


def _stats(args: argparse.Namespace) -> int:
    store = _store(args)
    try:
        counts, stats, wins = store.counts(), store.rating_stats(), store.win_rates()
        revision = store.schema_revision()
    finally:
        store.dispose()
    per_model: dict[tuple[str, str, str], list[float]] = defaultdict(lambda: [0, 0.0])
    for s in stats:
        totals = per_model[(s.model_name, s.model_version, s.style)]
        totals[0] += s.count
        totals[1] += s.count * s.mean_stars
    models = [
        {"model": name, "version": version, "style": style, "ratings": int(n), "mean_stars": round(total / n, 3)}
        for (name, version, style), (n, total) in sorted(per_model.items())
    ]
    versus = [
        {"first": "/".join(w.first), "second": "/".join(w.second), "first_wins": w.first_wins,
         "second_wins": w.second_wins, "ties": w.ties, "first_rate": round(w.first_rate, 3)}
        for w in wins
    ]  # fmt: skip
    if args.json:
        print(json.dumps({"ok": True, "schema_revision": revision, "counts": vars(counts), "ratings_by_model": models,
                          "win_rates": versus}, sort_keys=True))  # fmt: skip
        return 0
    print(
        f"schema {revision}: {counts.ratings} ratings, {counts.pair_votes} pair votes ({counts.skipped} skipped), "
        f"{counts.pieces} pieces, {counts.raters} raters"
    )
    for m in models:
        print(f"  {m['model']} v{m['version']} [{m['style']}]: {m['ratings']} ratings, mean {m['mean_stars']} stars")
    for v in versus:
        print(
            f"  {v['first']} vs {v['second']}: {v['first_wins']}-{v['second_wins']} ({v['ties']} ties), "
            f"{v['first']} wins {v['first_rate']:.0%}"
        )
    return 0


def _upgrade(args: argparse.Namespace) -> int:
    store = _store(args)  # opening upgrades
    try:
        print(f"feedback database at schema revision {store.schema_revision()}")
    finally:
        store.dispose()
    return 0
