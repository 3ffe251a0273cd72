"""The `musegen` command: check, generate and train from a shell (scripts, DAW users, CI)."""

from __future__ import annotations

import argparse
import importlib
import json
import logging
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from musegen_core.errors import FormatError, MusegenError
from musegen_core.formats import MusicFile, default_melody_part
from musegen_core.music import Piece
from musegen_core.workers import load_untrusted, open_untrusted

if TYPE_CHECKING:
    from musegen_core.controls import Controls

log = logging.getLogger("musegen")


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = _harmonizer_arguments(argv) or _parser().parse_args(argv)
    try:
        return args.run(args)
    except MusegenError as exc:
        return _fail(str(exc), getattr(args, "json", False))
    except Exception as exc:  # boundary: one line for the user, the traceback only with --verbose
        log.debug("unexpected error", exc_info=True)
        return _fail(f"internal error ({exc.__class__.__name__}): {exc}", getattr(args, "json", False), code=2)


# `musegen train --model harmonizer` and `musegen eval --harmonizer` take options of their own (the harmonizer trains
# and is scored on the JSB chorales, not on the melody corpus): the words that select them → (module, program name).
HARMONIZER_COMMANDS = {
    ("train", "--model", "harmonizer"): "musegen_core.training.harmonizer_train",
    ("eval", "--harmonizer"): "musegen_core.evaluation.harmonizer_eval",
}


def _harmonizer_arguments(argv: list[str]) -> argparse.Namespace | None:
    """The parsed options of a harmonizer command in `argv`, or None when it is another command."""
    words = [part for word in argv for part in (word.split("=", 1) if word.startswith("--model=") else [word])]
    for selector, module in HARMONIZER_COMMANDS.items():
        if words[:1] != [selector[0]]:
            continue
        rest = words[1:]
        for at in range(len(rest)):
            if tuple(rest[at : at + len(selector) - 1]) == selector[1:]:
                parser = argparse.ArgumentParser(prog="musegen " + " ".join(selector))
                importlib.import_module(module).add_arguments(parser)
                return parser.parse_args(rest[:at] + rest[at + len(selector) - 1 :])
    return None


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="musegen", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    check = commands.add_parser("check", help="parse melody files and summarise them")
    check.add_argument("files", type=Path, nargs="+", metavar="FILE", help="one or more music files")
    check.add_argument("--tune", type=int, default=0, help="tune index in a multi-tune ABC file (from 0)")
    check.add_argument("--json", action="store_true", help="print JSON instead of text")
    check.set_defaults(run=_check)

    generate = commands.add_parser("generate", help="continue a melody with a trained model")
    generate.add_argument("file", type=Path)
    generate.add_argument(
        "--model",
        default=None,
        help="installed model name, or a family (lstm, transformer, vae, gan) for its promoted model",
    )
    _add_control_arguments(generate)
    generate.add_argument("--tune", type=int, default=0, help="tune index in a multi-tune ABC file")
    generate.add_argument("--part", type=int, default=None, help="melody track index (default: best guess)")
    generate.add_argument("--out", type=Path, required=True, help="MIDI file to write (prime + continuation)")
    generate.add_argument("--wav", type=Path, default=None, help="also render the result to this WAV file")
    generate.set_defaults(run=_generate)

    render = commands.add_parser("render", help="render a melody file to audio (WAV, or MP3 by the --out suffix)")
    render.add_argument("file", type=Path)
    render.add_argument("--out", type=Path, required=True, help="OUT.wav or OUT.mp3")
    render.add_argument(
        "--soundfont", default=None, help="an installed SoundFont id (timgm6mb, fluidr3_gm, musescore_general) or, "
        "where MUSEGEN_ALLOW_USER_SOUNDFONTS=1, a .sf2/.sf3 path (default: the embedded TimGM6mb)",
    )  # fmt: skip
    render.add_argument("--program", type=int, default=None, help="General MIDI instrument 0–127 for every part")
    render.add_argument("--tempo", type=float, default=None, help="play at this tempo (bpm) instead of the file's")
    render.add_argument("--effects", action="store_true", help="reverb and chorus")
    render.add_argument("--no-normalize", action="store_true", help="keep the raw level (default: −18 LUFS)")
    render.add_argument("--tune", type=int, default=0, help="tune index in a multi-tune ABC file")
    render.set_defaults(run=_render)

    export = commands.add_parser("export", help="convert a melody file to MIDI, MusicXML or ABC")
    export.add_argument("file", type=Path)
    export.add_argument("--format", required=True, choices=["midi", "musicxml", "mxl", "abc"], dest="fmt")
    export.add_argument("--out", type=Path, required=True)
    export.add_argument("--tune", type=int, default=0, help="tune index in a multi-tune ABC file")
    export.set_defaults(run=_export)

    harmonize = commands.add_parser(
        "harmonize", help="harmonize a melody (Bach four-part or folk chords and bass), or regenerate chosen bars"
    )
    harmonize.add_argument("file", type=Path)
    harmonize.add_argument("--out", type=Path, required=True, help="OUT.mid, OUT.musicxml or OUT.mxl")
    harmonize.add_argument("--style", default="bach", choices=["bach", "folk"], help="harmony idiom (bach)")
    harmonize.add_argument("--seed", type=int, default=0, help="the same seed gives the same harmony (0)")
    harmonize.add_argument(
        "--bars-to-regenerate", default=None, metavar="FIRST-LAST",
        help="instead: rewrite only these bars (e.g. 5-8) of a four-part file, or of the melody, with the harmonizer",
    )  # fmt: skip
    harmonize.add_argument("--tune", type=int, default=0, help="tune index in a multi-tune ABC file")
    harmonize.add_argument("--part", type=int, default=None, help="melody track index (default: best guess)")
    harmonize.set_defaults(run=_harmonize)

    from musegen_core.training import corpus  # numpy + tqdm only; music21 is imported when a collection is built

    data = commands.add_parser("data", help="the training corpus")
    data_commands = data.add_subparsers(dest="data_command", required=True)
    stats = data_commands.add_parser("stats", help="tunes and steps per style and split, near-duplicates, skips")
    corpus.add_stats_arguments(stats)
    stats.set_defaults(run=corpus.run_stats)

    from musegen_core.evaluation import harness  # torch is imported only for commands that need it

    eval_parser = commands.add_parser(
        "eval", help="evaluate the installed models on the held-out test split (--harmonizer: the harmonizer on JSB)"
    )
    harness.add_arguments(eval_parser)
    eval_parser.set_defaults(run=harness.run)

    from musegen_core.training import train  # torch is imported only for commands that need it

    train_parser = commands.add_parser(
        "train", help="train a model on the bundled corpora (--model harmonizer: on the JSB chorales, own options)"
    )
    train.add_arguments(train_parser)
    train_parser.set_defaults(run=train.run)

    from musegen_core.training import style_classifier_train

    style_parser = commands.add_parser("style-classifier", help="train or evaluate the independent style classifier")
    style_classifier_train.add_arguments(style_parser)

    from musegen_core.training import style_judge_train

    judge_parser = commands.add_parser("style-judge", help="train the style judge that style focus picks takes with")
    style_judge_train.add_arguments(judge_parser)

    from musegen_core.models import manage  # fine-tuning from feedback, model versions and promotion
    from musegen_core.training import finetune

    finetune_parser = commands.add_parser("finetune", help="fine-tune a model on rater feedback into a new version")
    finetune.add_arguments(finetune_parser)
    finetune_parser.set_defaults(run=finetune.run)
    models_parser = commands.add_parser("models", help="installed models and versions: list, promote, rollback")
    manage.add_arguments(models_parser)

    from musegen_core.feedback import commands as feedback_commands  # SQLAlchemy is imported only when one runs

    feedback = commands.add_parser("feedback", help="the feedback database: dataset export, statistics, upgrade")
    feedback_commands.add_arguments(feedback)

    from musegen_core import admin  # hashlib only

    admin_parser = commands.add_parser("admin", help="the admin secret: make its hash for MUSEGEN_ADMIN_SECRET_HASH")
    admin.add_arguments(admin_parser)
    return parser


def _add_control_arguments(parser: argparse.ArgumentParser) -> None:
    """One flag per field of `controls.Controls` (defaults: the object's), plus --mood and --in-scale."""
    from musegen_core.controls import MOODS, SCALES

    add = parser.add_argument
    add("--bars", type=int, default=8, help="bars to generate (1–64)")
    add("--temperature", type=float, default=1.0, help="0.05–5: lower is safer, higher is wilder")
    add("--top-p", type=float, default=1.0, help="nucleus sampling mass in (0, 1]; 1 = off")
    add("--seed", type=int, default=0, help="the same seed and settings give the same take")
    add("--style", default=None, help="style for style-conditioned models (default: any style)")
    add("--mix-style", default=None, help="a second style to blend in (with --mix)")
    add("--mix", type=float, default=0.0, help="weight of --mix-style, 0–1")
    add("--style-strength", type=float, default=None,
        help="0–4: 1 as trained; higher leans on --style; above 2 keeps the likeliest of 2-16 bars (2)")  # fmt: skip
    add("--mood", choices=sorted(MOODS), default=None, help="sets --valence and --energy (which then fine-tune it)")
    add("--valence", type=float, default=None, help="-1 sad … +1 happy")
    add("--energy", type=float, default=None, help="-1 calm … +1 energetic")
    add("--density", type=float, default=0.0, help="-1 sparser … +1 busier")
    add("--complexity", type=float, default=0.0, help="-1 plainer … +1 more syncopated rhythm")
    add("--low", type=int, default=None, help="lowest MIDI pitch of new notes (43–96)")
    add("--high", type=int, default=None, help="highest MIDI pitch of new notes (43–96)")
    add("--key", default=None, help="tonic, e.g. D or Bb (default: the melody's key)")
    add("--mode", choices=sorted(SCALES), default=None, help="scale (default: the melody's mode)")
    add("--scale-pull", type=float, default=0.0, help="0 free … 1 every new note in the key's scale")
    add("--in-scale", action="store_true", help="same as --scale-pull 1")
    add("--tempo", type=float, default=None, help="bpm of the result (default: the melody's)")


def _controls(args: argparse.Namespace) -> Controls:
    """The `Controls` the flags ask for (a `ControlError` for absurd values)."""
    from musegen_core.controls import Controls

    values = {
        "bars": args.bars, "temperature": args.temperature, "top_p": args.top_p, "seed": args.seed,
        "style": args.style, "mix_style": args.mix_style, "mix": args.mix, "density": args.density,
        "complexity": args.complexity, "key": args.key, "mode": args.mode, "tempo_bpm": args.tempo,
        "scale_pull": 1.0 if args.in_scale else args.scale_pull,
    }  # fmt: skip
    optional = {"low": args.low, "high": args.high, "valence": args.valence, "energy": args.energy}
    optional["style_strength"] = args.style_strength  # unset: the Controls default
    values.update({name: value for name, value in optional.items() if value is not None})
    return Controls.with_mood(args.mood, **values) if args.mood else Controls(**values)


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise FormatError(f"Cannot read {path}: {exc.strerror or exc}.") from exc


def _check(args: argparse.Namespace) -> int:
    """Summarise music files; each is opened and parsed in worker processes (`workers`), as uploads are.

    One file: its summary, or the one-line error (exit 1). Several: one report per file as it is read (with --json,
    one JSON object per line, each with its "path"); a refused file does not stop the others; exit 1 when any was
    refused.
    """
    if len(args.files) == 1:
        _print_report({"ok": True, **_checked_file(args.files[0], args.tune)}, args.json)
        return 0
    refused = 0
    for path in args.files:
        try:
            report = {"ok": True, "path": str(path), **_checked_file(path, args.tune)}
        except MusegenError as exc:
            report = {"ok": False, "path": str(path), "error": " ".join(str(exc).split())}
            refused += 1
        _print_report(report, args.json)
    return 1 if refused else 0


def _checked_file(path: Path, tune: int) -> dict[str, Any]:
    music_file = open_untrusted(_read(path), path.name)
    return _summary(music_file, load_untrusted(music_file.data, music_file.filename, tune), tune)


def _print_report(report: dict[str, Any], as_json: bool) -> None:
    if as_json:
        print(json.dumps(report), flush=True)
        return
    for key, value in report.items():
        print(f"{key:>12}: {value}")
    print(flush=True)


def _summary(music_file: MusicFile, piece: Piece, tune: int) -> dict[str, Any]:
    return {
        "file": music_file.filename,
        "format": music_file.format,
        "tunes": len(music_file.tune_titles),
        "tune": music_file.tune_titles[tune],
        "tracks": [{"name": p.name, "notes": len(p.notes), "program": p.program} for p in piece.parts],
        "melody_track": default_melody_part(piece),
        "notes": piece.note_count,
        "bars": piece.bar_count(),
        "meter": str(piece.time_signature),
        "key": piece.key.name if piece.key else None,
        "tempo_bpm": piece.tempo_bpm,
    }


def _generate(args: argparse.Namespace) -> int:
    from musegen_core.formats.midi import piece_to_midi
    from musegen_core.generate import continue_melody
    from musegen_core.models.registry import default_model_name, load_model

    piece = load_untrusted(_read(args.file), args.file.name, args.tune)
    part = default_melody_part(piece) if args.part is None else args.part
    if not 0 <= part < len(piece.parts):
        raise FormatError(f"--part must be within 0 and {len(piece.parts) - 1} (received {part}).")
    controls = _controls(args)
    result = continue_melody(load_model(args.model or default_model_name() or ""), piece, controls, part_index=part)
    args.out.write_bytes(piece_to_midi(result.joined()))
    print(f"wrote {args.out} ({len(result.generated.parts[0].notes)} new notes over {args.bars} bars)")
    if args.wav:
        from musegen_core.render.audio import render

        rendered = render(result.joined())
        args.wav.write_bytes(rendered.wav)
        print(f"wrote {args.wav}" + (f" ({rendered.message})" if rendered.truncated else ""))
    return 0


OUT_FORMATS = {".mid": "midi", ".midi": "midi", ".musicxml": "musicxml", ".xml": "musicxml", ".mxl": "mxl"}


def _harmonize(args: argparse.Namespace) -> int:
    from musegen_core.formats.export import export_piece
    from musegen_core.harmony import service
    from musegen_core.models.harmonizer import VOICES

    fmt = OUT_FORMATS.get(args.out.suffix.lower())
    if fmt is None:
        raise FormatError(f"--out must end in one of {', '.join(OUT_FORMATS)} (received {args.out.name!r}).")
    piece = load_untrusted(_read(args.file), args.file.name, args.tune)
    part = default_melody_part(piece) if args.part is None else args.part
    if not 0 <= part < len(piece.parts):
        raise FormatError(f"--part must be within 0 and {len(piece.parts) - 1} (received {part}).")
    if args.bars_to_regenerate:
        first, last = service.parse_bar_range(args.bars_to_regenerate)
        whole = len(piece.parts) == len(VOICES) and args.part is None
        result = service.regenerate_bars(piece if whole else piece.only_part(part), first, last, seed=args.seed)
        done = f"bars {first}–{last} regenerated"
    else:
        result = service.harmonize_melody(piece, args.style, seed=args.seed, part_index=part)
        done = f"{args.style} harmony, {len(result.parts)} parts"
    args.out.write_bytes(export_piece(result, fmt))
    print(f"wrote {args.out} ({done}, {result.note_count} notes)")
    return 0


def _render(args: argparse.Namespace) -> int:
    from musegen_core.render.audio_export import render_file

    rendered = render_file(
        args.file, args.out, args.soundfont, args.program, tune=args.tune, tempo_bpm=args.tempo,
        effects=args.effects, normalize=not args.no_normalize,
    )  # fmt: skip
    print(f"wrote {args.out} ({rendered.seconds:.1f} s, {rendered.soundfont})")
    if rendered.truncated:
        print(rendered.message)
    return 0


def _export(args: argparse.Namespace) -> int:
    from musegen_core.formats.export import export_file

    piece = export_file(args.file, args.fmt, args.out, tune_index=args.tune)
    print(f"wrote {args.out} ({piece.note_count} notes, {len(piece.parts)} part{'s' * (len(piece.parts) != 1)})")
    return 0


def _fail(message: str, as_json: bool, code: int = 1) -> int:
    line = " ".join(message.split())
    if as_json:
        print(json.dumps({"ok": False, "error": line}))
    else:
        print(f"musegen: {line}", file=sys.stderr)
    return code


if __name__ == "__main__":
    sys.exit(main())
