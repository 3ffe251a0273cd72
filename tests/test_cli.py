"""The `musegen` command as scripts use it: exit codes, one-line errors, JSON, files written."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from musegen_core.formats import load_piece
from musegen_core.formats.midi import piece_to_midi
from musegen_core.music import Note, Part, Piece, TimeSignature
from musegen_core.render.audio import TAIL_SECONDS, wav_duration_seconds

ROOT = Path(__file__).resolve().parent.parent
DATA = Path(__file__).resolve().parent / "data"
MUSEGEN = shutil.which("musegen", path=str(Path(sys.executable).parent))
has_model = pytest.mark.skipif(not (ROOT / "models" / "lstm-folk").exists(), reason="shipped model missing")


def musegen(*args: str | Path) -> subprocess.CompletedProcess[str]:
    command = [MUSEGEN] if MUSEGEN else [sys.executable, "-m", "musegen_core.cli"]
    return subprocess.run([*command, *map(str, args)], capture_output=True, text=True, timeout=120)


@pytest.fixture
def waltz_mid(tmp_path: Path) -> Path:
    notes = tuple(Note(p, i * 1.0, 1.0) for i, p in enumerate([67, 71, 74, 72, 71, 69, 67, 66, 67]))
    path = tmp_path / "waltz.mid"
    path.write_bytes(piece_to_midi(Piece((Part("Flute", notes, program=73),), 132, TimeSignature(3, 4))))
    return path


def test_check_summarises_a_usable_file(waltz_mid: Path) -> None:
    done = musegen("check", waltz_mid, "--json")
    assert done.returncode == 0
    summary = json.loads(done.stdout)
    assert summary["ok"] is True
    assert (summary["format"], summary["notes"], summary["bars"], summary["meter"]) == ("midi", 9, 3, "3/4")
    assert summary["tracks"] == [{"name": "Flute", "notes": 9, "program": 73}]


def test_check_lists_the_tunes_of_a_multi_tune_abc_file() -> None:
    done = musegen("check", DATA / "three_tunes.abc", "--tune", "1", "--json")
    summary = json.loads(done.stdout)
    assert done.returncode == 0 and summary["tunes"] == 3 and summary["format"] == "abc"


@pytest.mark.parametrize("name", sorted(p.name for p in (DATA / "corrupted").iterdir()))
def test_check_refuses_a_broken_file_with_one_line(name: str) -> None:
    done = musegen("check", DATA / "corrupted" / name)
    assert done.returncode == 1
    assert done.stdout == "" and done.stderr.startswith("musegen: ") and done.stderr.count("\n") == 1
    assert "Traceback" not in done.stderr
    as_json = json.loads(musegen("check", DATA / "corrupted" / name, "--json").stdout)
    assert as_json["ok"] is False and as_json["error"]


def test_check_of_a_missing_file_is_a_clear_error(tmp_path: Path) -> None:
    done = musegen("check", tmp_path / "nope.mid")
    assert done.returncode == 1 and "Cannot read" in done.stderr


@has_model
def test_generate_writes_midi_and_wav_and_is_reproducible(waltz_mid: Path, tmp_path: Path) -> None:
    outs = []
    for run in ("a", "b"):
        out, wav = tmp_path / f"{run}.mid", tmp_path / f"{run}.wav"
        done = musegen(
            "generate", waltz_mid, "--bars", "4", "--temperature", "0.9", "--seed", "3", "--out", out, "--wav", wav
        )
        assert done.returncode == 0, done.stderr
        outs.append(out.read_bytes())
    assert outs[0] == outs[1]
    result = load_piece(outs[0], "a.mid")
    assert result.time_signature == TimeSignature(3, 4) and result.tempo_bpm == 132
    assert result.bar_count() == 3 + 4  # the prime's three bars, then four new ones
    assert wav_duration_seconds((tmp_path / "a.wav").read_bytes()) == pytest.approx(
        result.duration_seconds + TAIL_SECONDS, abs=0.01
    )


@has_model
@pytest.mark.parametrize(
    ("option", "value", "message"),
    [
        ("--bars", "0", "bars must be"),
        ("--temperature", "99", "temperature must be"),
        ("--seed", "-4", "seed must"),
        ("--density", "5", "density must be a number within -1 and 1"),
        ("--key", "Q", "key must be one of"),
        ("--low", "93", "pitch range must span at least"),
        ("--tempo", "nan", "tempo_bpm must be"),
    ],
)
def test_generate_refuses_absurd_controls(
    waltz_mid: Path, tmp_path: Path, option: str, value: str, message: str
) -> None:
    done = musegen("generate", waltz_mid, option, value, "--out", tmp_path / "x.mid")
    assert done.returncode == 1 and message in done.stderr and not (tmp_path / "x.mid").exists()


def test_generate_with_an_unknown_model_names_the_installed_ones(waltz_mid: Path, tmp_path: Path) -> None:
    done = musegen("generate", waltz_mid, "--model", "no-such-model", "--out", tmp_path / "x.mid")
    assert done.returncode == 1 and "no model named 'no-such-model'" in done.stderr


def test_train_is_wired_into_the_cli(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MUSEGEN_CACHE_DIR", str(tmp_path / "cache"))
    out = tmp_path / "model"
    tiny = ["--preset", "lstm-tiny", "--collections", "oneills", "--max-tunes", "30", "--steps", "2"]
    tiny += ["--eval-every", "2", "--batch-size", "4", "--window", "16", "--valid-windows", "4", "--out", str(out)]
    done = musegen("train", *tiny)
    assert done.returncode == 0, done.stderr
    config = json.loads((out / "config.json").read_text())
    assert config["training"]["command"].startswith("musegen train ")


@has_model
def test_generate_takes_every_control_as_a_flag(waltz_mid: Path, tmp_path: Path) -> None:
    out = tmp_path / "steered.mid"
    flags = ["--mood", "sad", "--energy", "0.2", "--density", "0.5", "--complexity", "-0.5", "--key", "D"]
    flags += ["--mode", "minor", "--in-scale", "--low", "62", "--high", "79", "--tempo", "90", "--top-p", "0.95"]
    flags += ["--style", "irish", "--mix-style", "german_folk", "--mix", "0.3", "--bars", "4"]
    done = musegen("generate", waltz_mid, *flags, "--out", out)
    assert done.returncode == 0, done.stderr
    result = load_piece(out.read_bytes(), out.name)
    new = [n for n in result.parts[0].notes if n.start_beats >= 9]  # after the waltz's three bars
    assert new and all(62 <= n.pitch <= 79 and (n.pitch - 2) % 12 in (0, 2, 3, 5, 7, 8, 10) for n in new)
    assert result.tempo_bpm == 90
    unknown = musegen("generate", waltz_mid, "--mood", "grumpy", "--out", tmp_path / "x.mid")
    assert unknown.returncode == 2 and "invalid choice: 'grumpy'" in unknown.stderr


@has_model
@pytest.mark.parametrize("family", ["lstm", "transformer", "vae", "gan"])
def test_generate_by_family_uses_its_promoted_model_and_a_style(waltz_mid: Path, tmp_path: Path, family: str) -> None:
    out = tmp_path / f"{family}.mid"
    done = musegen("generate", waltz_mid, "--model", family, "--style", "irish", "--bars", "2", "--out", out)
    assert done.returncode == 0, done.stderr
    assert load_piece(out.read_bytes(), out.name).bar_count() == 3 + 2
    wrong = musegen("generate", waltz_mid, "--model", family, "--style", "klezmer", "--out", tmp_path / "x.mid")
    assert wrong.returncode == 1 and "klezmer" in wrong.stderr


def test_render_writes_wav_and_mp3_with_the_asked_instrument(waltz_mid: Path, tmp_path: Path) -> None:
    done = musegen("render", waltz_mid, "--out", tmp_path / "waltz.wav", "--program", "40", "--tempo", "66")
    assert done.returncode == 0, done.stderr
    seconds = wav_duration_seconds((tmp_path / "waltz.wav").read_bytes())
    assert seconds == pytest.approx(9 * 60 / 66 + TAIL_SECONDS, abs=0.05)  # 9 beats at 66 bpm + the release
    assert musegen("render", waltz_mid, "--out", tmp_path / "waltz.mp3").returncode == 0
    assert (tmp_path / "waltz.mp3").read_bytes()[:2] == b"\xff\xfb"


def test_render_refuses_a_user_soundfont_unless_the_server_allows_it(waltz_mid: Path, tmp_path: Path) -> None:
    fake = tmp_path / "mine.sf2"
    fake.write_bytes(b"RIFF" + bytes(100))
    done = musegen("render", waltz_mid, "--out", tmp_path / "x.wav", "--soundfont", fake)
    assert done.returncode == 1 and "MUSEGEN_ALLOW_USER_SOUNDFONTS" in done.stderr and "Traceback" not in done.stderr
    assert not (tmp_path / "x.wav").exists()


@pytest.mark.parametrize("fmt, suffix", [("midi", ".mid"), ("musicxml", ".musicxml"), ("mxl", ".mxl"), ("abc", ".abc")])
def test_export_converts_and_the_result_reads_back_equal(waltz_mid: Path, tmp_path: Path, fmt: str, suffix: str):
    out = tmp_path / f"waltz{suffix}"
    done = musegen("export", waltz_mid, "--format", fmt, "--out", out)
    assert done.returncode == 0, done.stderr
    original, exported = load_piece(waltz_mid.read_bytes(), "waltz.mid"), load_piece(out.read_bytes(), out.name)
    notes = [(n.pitch, n.start_beats, n.duration_beats) for n in exported.parts[0].notes]
    assert notes == [(n.pitch, n.start_beats, n.duration_beats) for n in original.parts[0].notes]
    assert exported.time_signature == TimeSignature(3, 4)


def test_export_says_why_abc_cannot_hold_chords(tmp_path: Path) -> None:
    chords = tmp_path / "chords.mid"
    chords.write_bytes(piece_to_midi(Piece((Part("Piano", (Note(60, 0, 1), Note(64, 0, 1))),))))
    done = musegen("export", chords, "--format", "abc", "--out", tmp_path / "chords.abc")
    assert done.returncode == 1 and "chords or overlapping notes" in done.stderr
    assert not (tmp_path / "chords.abc").exists()
