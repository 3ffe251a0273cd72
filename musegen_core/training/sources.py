"""Where corpus tunes come from: music21's bundled collections, their licences and style labels, and their readers.

The ABC collections (Essen, O'Neill's, Ryan's) hold many tunes per file, split at `X:` lines. The Bach chorales are
one MusicXML file (`.mxl`/`.xml`) per chorale setting, of which the soprano part is kept (the first part whose name
starts with "Soprano": many files put horns, trumpets or strings first). The `.krn` copies of three chorales and the
Roman-numeral analyses are not read; a Bach file without a soprano part (the C-major prelude BWV 846) is skipped.
Everything is parsed from the file's text or bytes, never through music21's corpus search or pickle cache.

Essen labels: songs in `han*` files are Chinese, in `irl.abc` Irish, the rest German (with Luxembourg and Lorraine);
its `test*` files (samples of every origin, repeated from other files) and `folkHaydn.abc` (Scottish songs) are
left out.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass, field
from pathlib import Path

from musegen_core.training.m21_tune import SkipTune

STYLES = ("german_folk", "chinese_folk", "irish", "american_fiddle", "bach_chorale")  # stable: models embed the index
MAX_TUNE_CHARS = 20_000  # ABC text longer than this is skipped unparsed (guards against runaway parses)
METER_FIELD = re.compile(r"(?m)^M:\s*([^\s%]+)|\[M:\s*([^\]]+)\]")  # header/body `M:` lines, inline `[M:..]`
Source = tuple[str, str | bytes]  # (tune id, ABC text of one tune or MusicXML bytes of one file)


@dataclass(frozen=True)
class Collection:
    """One music21 corpus folder: where it is, how to read and label its tunes, and under what licence."""

    folder: str  # folder under music21's corpus directory
    licence: str  # short licence statement for model cards
    commercial_use: bool  # may models trained on it be used commercially?
    style: str  # style label of its tunes (one of STYLES)
    alt_style: dict[str, str] = field(default_factory=dict)  # file-name prefix → style overriding `style`
    exclude: tuple[str, ...] = ()  # file-name prefixes of files left out
    file_format: str = "abc"  # "abc" (many tunes per file) or "musicxml" (one piece per .mxl/.xml file)
    chunk_tunes: int = 100  # tunes per worker task


COLLECTIONS = {
    "essen": Collection(
        "essenFolksong",
        "Essen Folksong Collection (ABC by S. Schlien): non-commercial distribution and use only",
        False,
        "german_folk",
        {"han": "chinese_folk", "irl": "irish"},  # han*: Chinese songs; irl.abc: Irish songs (O'Sullivan, O'Boyle)
        exclude=("test", "folkHaydn"),  # test*: samples of all origins (Chinese, Mexican...) repeated from elsewhere;
    ),  # folkHaydn: Scottish songs from Haydn's arrangements
    "oneills": Collection("oneills1850", "O'Neill's Music of Ireland (1850): public domain", True, "irish"),
    "ryans": Collection("ryansMammoth", "Ryan's Mammoth Collection (1883): public domain", True, "american_fiddle"),
    "bach": Collection(
        "bach",
        "J. S. Bach's chorales: public domain music; MusicXML encodings © 2004 Margaret Greentree, bundled with "
        "music21 'used by permission' (no non-commercial restriction stated, unlike Essen)",
        True,
        "bach_chorale",
        file_format="musicxml",
        chunk_tunes=8,
    ),
}


def collection_files(name: str, root: Path) -> list[Path]:
    """The files of a collection under a corpus root, sorted by name. Raises FileNotFoundError when there are none."""
    spec = COLLECTIONS[name]
    patterns = ("*.abc",) if spec.file_format == "abc" else ("*.mxl", "*.xml")
    found = (path for pattern in patterns for path in (root / spec.folder).glob(pattern))
    files = sorted((path for path in found if not path.name.startswith(spec.exclude)), key=lambda path: path.name)
    if not files:
        raise FileNotFoundError(f"no {' or '.join(patterns)} files for collection {name!r} under {root / spec.folder}")
    return files


def tune_sources(name: str, files: list[Path], root: Path, max_tunes: int | None) -> list[Source]:
    """(tune id, text or bytes) of every tune, in file order; the first `max_tunes` only when given.

    Tune ids are "<folder>/<file>#<index of the tune in the file>"."""
    sources: list[Source] = []
    for path in files:
        rel = str(path.relative_to(root))
        if COLLECTIONS[name].file_format == "abc":
            texts = split_tunes(path.read_text(encoding="latin-1"))
            sources += [(f"{rel}#{index}", text) for index, text in enumerate(texts)]
        else:
            sources.append((f"{rel}#0", path.read_bytes()))
        if max_tunes is not None and len(sources) >= max_tunes:
            return sources[:max_tunes]
    return sources


def split_tunes(text: str) -> list[str]:
    """The tunes of an ABC file: each starts at an `X:` line (text before the first one is dropped)."""
    return [chunk for chunk in re.split(r"(?m)^(?=X:)", text) if chunk.startswith("X:")]


def style_of(collection: str, file_name: str) -> str:
    """Style label of a tune from its collection and file name (Essen `han*` files hold Chinese songs)."""
    spec = COLLECTIONS[collection]
    return next((style for prefix, style in spec.alt_style.items() if file_name.startswith(prefix)), spec.style)


def read_score(collection: str, payload: str | bytes):
    """Parse one tune into a music21 score and the part holding its melody: `(score, part)`.

    Raises:
        SkipTune: the tune is refused before or after parsing (the message is the countable reason).
    """
    if COLLECTIONS[collection].file_format == "abc":
        return _read_abc(payload if isinstance(payload, str) else payload.decode("latin-1"))
    return _read_chorale(payload if isinstance(payload, bytes) else payload.encode())


def _read_abc(text: str):
    from music21 import converter

    if len(text) > MAX_TUNE_CHARS:
        raise SkipTune("too long (ABC text)")
    if len({(header or inline).strip() for header, inline in METER_FIELD.findall(text)}) > 1:
        raise SkipTune("meter change")
    score = converter.parseData(text, format="abc")
    return score, score.parts[0] if score.parts else score


def _read_chorale(data: bytes):
    """A Bach chorale file's score (parsed from the XML tree: no file access, no pickle cache) and soprano part."""
    from music21 import meter
    from music21.musicxml import xmlToM21

    from musegen_core.formats.musicxml import musicxml_bytes, parse_musicxml_root

    importer = xmlToM21.MusicXMLImporter()
    importer.xmlRootToScore(parse_musicxml_root(musicxml_bytes(data)), importer.stream)
    score = importer.stream
    soprano = next((p for p in score.parts if (p.partName or "").strip().lower().startswith("soprano")), None)
    if soprano is None:
        raise SkipTune("no soprano part (not a chorale)")
    if len({ts.ratioString for ts in soprano.recurse().getElementsByClass(meter.TimeSignature)}) > 1:
        raise SkipTune("meter change")  # music21's ABC reader adds pickup meters, so this check is for MusicXML only
    return score, soprano


def chorale_title(tune_id: str) -> str:
    """ "BWV <number>", followed by the chorale's title where music21's chorale list knows it (BWV 250–438)."""
    number = Path(tune_id.split("#")[0]).stem.removeprefix("bwv")
    known = _chorale_titles().get(number, "")
    return f"BWV {number}" + (f": {known}" if known else "")


@functools.cache
def _chorale_titles() -> dict[str, str]:
    """BWV number (as text) → title, from music21's chorale list (plain Python data; ~0.3 s, once per process)."""
    from music21.corpus.chorales import ChoraleList

    return {str(bwv): info["title"] for bwv, info in ChoraleList().byBWV.items()}
