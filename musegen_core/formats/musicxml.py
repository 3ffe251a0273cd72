"""MusicXML (`.musicxml`/`.xml`, and compressed `.mxl`) ↔ `Piece`, through music21's MusicXML importer and exporter.

Untrusted input is checked before any parser sees it: a `.mxl` archive is inspected (member count, total
uncompressed size, compression ratio, member paths) before anything is decompressed, and XML that declares
entities (billion-laughs bombs, external entities/XXE) is refused outright. The XML is parsed here with
ElementTree and handed to music21 as a tree, so music21 never reads files or its pickle cache.

Writing (`piece_to_musicxml`, `piece_to_mxl`) builds a score with `score.piece_to_stream` and runs music21's
exporter in memory: no file is written and no cache is touched.
"""

from __future__ import annotations

import html
import io
import logging
import re
import xml.etree.ElementTree as ET
import zipfile
from collections.abc import Iterable
from pathlib import PurePosixPath

from music21.musicxml import m21ToXml, xmlToM21

from musegen_core.errors import FormatError
from musegen_core.formats.midi import MAX_BAR_BEATS, MAX_NOTES, MAX_PARTS
from musegen_core.formats.score import piece_to_stream, stream_to_piece
from musegen_core.music import Piece

MAX_ARCHIVE_MEMBERS = 100
MAX_UNCOMPRESSED_BYTES = 20 * 1024 * 1024  # total of all members of a .mxl archive
MAX_COMPRESSION_RATIO = 200  # MusicXML compresses ~10-50x; far beyond that is a zip bomb
MAX_XML_DEPTH = 64
MAX_KEY_FIFTHS = 12  # music21 builds a key signature's accidentals one by one: 10**26 sharps never ends
_ZIP_MAGIC = b"PK\x03\x04"
_ENTITY_MARKERS = tuple("<!ENTITY".encode(codec) for codec in ("utf-8", "utf-16-le", "utf-16-be"))
_UPLOAD_HINT = "Export the score again as MusicXML (.musicxml or .mxl) from your notation program."
MXL_MIMETYPE = "application/vnd.recordare.musicxml"
MUSICXML_MIMETYPE = "application/vnd.recordare.musicxml+xml"
_MXL_SCORE = "score.musicxml"
_ZIP_EPOCH = (1980, 1, 1, 0, 0, 0)  # fixed member timestamps: the same piece always gives the same bytes
log = logging.getLogger("musegen.formats")


def musicxml_to_piece(data: bytes) -> Piece:
    """Read MusicXML bytes (plain XML or a `.mxl` zip) into a `Piece`.

    Raises:
        FormatError: unsafe archive or XML, malformed XML, not MusicXML, beyond `_check_sizes`' limits (checked
            before music21 parses anything), or a file music21 cannot import.
    """
    root = parse_musicxml_root(musicxml_bytes(data))
    _check_sizes(root)
    importer = xmlToM21.MusicXMLImporter()
    try:
        importer.xmlRootToScore(root, importer.stream)
        return stream_to_piece(importer.stream)
    except FormatError:
        raise
    except Exception as error:  # boundary: music21 raises several exception types on odd MusicXML (details logged)
        log.info("music21 could not read a MusicXML file", exc_info=True)
        raise FormatError(
            f"music21 could not read this MusicXML file: its content does not follow the MusicXML standard. "
            f"{_UPLOAD_HINT}"
        ) from error


def _check_sizes(root: ET.Element) -> None:
    """Refuse, before music21 sees them, what it takes minutes or forever on: more than `MAX_PARTS` parts or
    `MAX_NOTES` <note> elements (rests included; ~10 s for 20,000), a bar of more than `MAX_BAR_BEATS` beats (96 s for
    one of 2,000), a key signature of more than `MAX_KEY_FIFTHS` sharps or flats."""
    parts = len(root.findall("part"))
    if parts > MAX_PARTS:
        raise FormatError(f"This MusicXML file has {parts} parts; MuseGen reads at most {MAX_PARTS}.")
    note_elements = sum(1 for _ in root.iter("note"))
    if note_elements > MAX_NOTES:
        raise FormatError(
            f"This MusicXML file has {note_elements:,} notes and rests; MuseGen reads at most {MAX_NOTES:,}."
        )
    for beats in root.iter("beats"):
        if sum(int(number) for number in re.findall(r"\d{1,6}", beats.text or "")) > MAX_BAR_BEATS:
            raise FormatError(
                f"This MusicXML file has a time signature of more than {MAX_BAR_BEATS} beats a bar, which MuseGen "
                f"does not read. {_UPLOAD_HINT}"
            )
    for fifths in root.iter("fifths"):
        text = (fifths.text or "0").strip()
        if not re.fullmatch(r"[-+]?\d{1,2}", text) or abs(int(text)) > MAX_KEY_FIFTHS:
            raise FormatError(
                f"This MusicXML file has a key signature of {text[:20]!r} sharps or flats; MuseGen reads at most "
                f"{MAX_KEY_FIFTHS}. {_UPLOAD_HINT}"
            )


def piece_to_musicxml(piece: Piece) -> bytes:
    """Write `piece` as an uncompressed MusicXML 4.0 document (UTF-8), notes quantised as `piece_to_stream` says.

    Raises:
        FormatError: the score would be too long (`score.MAX_SCORE_MEASURES`), or music21's exporter fails on it.
    """
    score = piece_to_stream(piece)
    try:
        return m21ToXml.GeneralObjectExporter(score).parse()
    except Exception as error:  # boundary: music21's exporter raises several exception types
        reason = " ".join(str(error).split())[:120] or type(error).__name__
        raise FormatError(f"music21 could not write this piece as MusicXML ({reason}).") from error


def piece_to_mxl(piece: Piece) -> bytes:
    """Write `piece` as compressed MusicXML (`.mxl`): `piece_to_musicxml` in a zip with its container file."""
    container = (
        '<?xml version="1.0" encoding="UTF-8"?>\n<container><rootfiles>'
        f'<rootfile full-path="{_MXL_SCORE}" media-type="{MUSICXML_MIMETYPE}"/>'
        "</rootfiles></container>\n"
    )
    return zip_bytes(
        [
            ("mimetype", MXL_MIMETYPE.encode()),
            ("META-INF/container.xml", container.encode()),
            (_MXL_SCORE, piece_to_musicxml(piece)),
        ]
    )


def zip_bytes(members: Iterable[tuple[str, bytes]]) -> bytes:
    """A zip archive of `(name, content)` members in order, with fixed timestamps; a member named "mimetype" is
    stored uncompressed (the `.mxl` rule: a reader can identify the archive from its first bytes)."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, content in members:
            info = zipfile.ZipInfo(name, date_time=_ZIP_EPOCH)
            info.compress_type = zipfile.ZIP_STORED if name == "mimetype" else zipfile.ZIP_DEFLATED
            archive.writestr(info, content)
    return buffer.getvalue()


def musicxml_bytes(data: bytes) -> bytes:
    """The MusicXML document itself: `data` unchanged, or the root file of a `.mxl` archive, checked first."""
    return _read_mxl(data) if data.startswith(_ZIP_MAGIC) else data


def musicxml_title(xml: bytes) -> str:
    """The work or movement title, found by a quick text search (no parsing); "" when there is none."""
    head = xml[:65536].decode("utf-8", errors="replace")
    for tag in ("work-title", "movement-title"):
        match = re.search(rf"<{tag}>([^<]*)</{tag}>", head)
        if match and match.group(1).strip():
            return " ".join(html.unescape(match.group(1)).split())
    return ""


def parse_musicxml_root(xml: bytes) -> ET.Element:
    """Parse XML safely into its root element; a `score-timewise` document is turned into `score-partwise`."""
    root = _parse_xml(xml, "This XML file")
    if root.tag == "score-timewise":
        root = _timewise_to_partwise(root)
    if root.tag != "score-partwise":
        raise FormatError(f"This XML file is not MusicXML (its root element is <{root.tag}>). {_UPLOAD_HINT}")
    return root


def _parse_xml(xml: bytes, what: str) -> ET.Element:
    """`xml`'s root element, refusing entity declarations, malformed XML, unknown encodings and nesting deeper than
    `MAX_XML_DEPTH` (MusicXML needs about 8 levels; thousands would make every later walk of the tree slow)."""
    if any(marker in xml for marker in _ENTITY_MARKERS):
        raise FormatError(f"{what} declares entities (<!ENTITY>), which MuseGen refuses for safety. {_UPLOAD_HINT}")
    try:
        root = ET.fromstring(xml)
    except ET.ParseError as error:
        raise FormatError(f"{what} is not well-formed XML ({error}). {_UPLOAD_HINT}") from error
    except (LookupError, ValueError) as error:  # an encoding Python does not know, or cannot parse with expat
        raise FormatError(f"{what} declares a text encoding MuseGen cannot read. {_UPLOAD_HINT}") from error
    if _depth(root) > MAX_XML_DEPTH:
        raise FormatError(f"{what} nests its elements more than {MAX_XML_DEPTH} levels deep. {_UPLOAD_HINT}")
    return root


def _depth(root: ET.Element) -> int:
    """How many levels of elements `root` holds (itself included), without recursion."""
    deepest, level = 0, [root]
    while level:
        deepest += 1
        level = [child for element in level for child in element]
    return deepest


def _timewise_to_partwise(root: ET.Element) -> ET.Element:
    """Regroup measure → part into part → measure (what the MusicXML spec's XSLT does)."""
    partwise = ET.Element("score-partwise", root.attrib)
    partwise.extend(child for child in root if child.tag != "measure")
    parts: dict[str | None, ET.Element] = {}
    for measure in root.findall("measure"):
        for part in measure.findall("part"):
            if part.get("id") not in parts:
                parts[part.get("id")] = ET.SubElement(partwise, "part", part.attrib)
            ET.SubElement(parts[part.get("id")], "measure", measure.attrib).extend(list(part))
    return partwise


def _read_mxl(data: bytes) -> bytes:
    """The root MusicXML file of a `.mxl` archive, after checking the archive is safe to decompress."""
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
    except Exception as error:  # boundary: BadZipFile, OSError, UnicodeDecodeError (a member name), ...
        log.info("opening a .mxl archive failed", exc_info=True)
        raise FormatError(f"This .mxl file is not a valid zip archive. {_UPLOAD_HINT}") from error
    with archive:
        _check_archive(archive.infolist())
        return _member(archive, _rootfile_name(archive))


def _member(archive: zipfile.ZipFile, name: str) -> bytes:
    """One member's bytes, or a `FormatError` when it cannot be unpacked."""
    try:
        return archive.read(name)
    except Exception as error:  # boundary: BadZipFile, zlib.error, EOFError, NotImplementedError (method), RuntimeError
        log.info("unpacking %r from a .mxl archive failed", name, exc_info=True)
        raise FormatError(
            f"This .mxl archive is damaged or encrypted: its file {name[:80]!r} cannot be unpacked. {_UPLOAD_HINT}"
        ) from error


def _check_archive(members: list[zipfile.ZipInfo]) -> None:
    """Refuse archives with too many members, too much (or too compressed) content, or paths outside the archive."""
    if len(members) > MAX_ARCHIVE_MEMBERS:
        raise FormatError(
            f"This .mxl archive holds {len(members)} files; MuseGen accepts at most {MAX_ARCHIVE_MEMBERS}."
        )
    total = sum(member.file_size for member in members)
    if total > MAX_UNCOMPRESSED_BYTES:
        raise FormatError(
            f"This .mxl archive would unpack to {total / 2**20:.1f} MB; "
            f"MuseGen accepts at most {MAX_UNCOMPRESSED_BYTES // 2**20} MB."
        )
    for member in members:
        path = PurePosixPath(member.filename.replace("\\", "/"))
        if path.is_absolute() or ".." in path.parts or ":" in member.filename:
            raise FormatError(f"This .mxl archive contains an unsafe path ({member.filename!r}). {_UPLOAD_HINT}")
        if member.file_size > 1_000_000 and member.file_size > MAX_COMPRESSION_RATIO * max(member.compress_size, 1):
            raise FormatError(
                f"This .mxl archive is compressed more than {MAX_COMPRESSION_RATIO}:1, like a zip bomb. {_UPLOAD_HINT}"
            )


def _rootfile_name(archive: zipfile.ZipFile) -> str:
    """The score named by META-INF/container.xml, else the first .xml/.musicxml file outside META-INF."""
    names = archive.namelist()
    if "META-INF/container.xml" in names:
        try:
            container = _container_rootfiles(_member(archive, "META-INF/container.xml"))
        except FormatError:
            container = []
        for path in container:
            if path in names:
                return path
    scores = [n for n in names if n.lower().endswith((".xml", ".musicxml")) and not n.startswith("META-INF/")]
    if not scores:
        raise FormatError(f"This .mxl archive contains no MusicXML file. {_UPLOAD_HINT}")
    return scores[0]


def _container_rootfiles(xml: bytes) -> list[str]:
    """`full-path`s of the MusicXML rootfiles listed in a `.mxl` container.xml, in order (namespace-agnostic)."""
    root = _parse_xml(xml, "This .mxl archive's container.xml")
    rootfiles = [e for e in root.iter() if e.tag.rsplit("}", 1)[-1] == "rootfile" and e.get("full-path")]
    musicxml = [e for e in rootfiles if "musicxml" in (e.get("media-type") or "musicxml")]
    return [e.get("full-path", "") for e in musicxml or rootfiles]
