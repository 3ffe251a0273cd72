"""No code from data: nothing in MuseGen's own code turns bytes from a file into objects that run code.

Static, an `ast` scan (`scan_source`) of musegen_core/, pages/, app.py, bench/ and scripts/ (Python files, and the
`-c '…'` snippets of the shell scripts). It fails on:
- importing a pickle-family module (`PICKLE_MODULES`), or calling `joblib.load` / `pandas.read_pickle`;
- `torch.load` without `weights_only=True`; `numpy.load` with `allow_pickle` set to anything but False;
- builtin `eval` / `exec` of anything but a string literal;
- `yaml.load` without a safe Loader, `yaml.unsafe_load`, `yaml.full_load`;
- a music21 parse entry point that takes a path or URL (`converter.parse` / `parseFile` / `parseURL`,
  `corpus.parse`) without both `forceSource=True` and `storePickle=False`: given a file path, music21 loads, and
  writes, a pickled copy of the score in its scratch folder. `parseData` reads text it is given and never looks at
  that cache (`test_music21s_parse_data_has_no_cache` keeps that true across music21 upgrades).

Names are resolved through each module's imports, so `model.eval()` or a local variable called `converter` is not
flagged. MuseGen's upload readers call none of these entry points and need no helper: formats/abc.py gives the
tune's text to music21's ABC tokenizer and translator (`ABCFile().readstr`, `translate.abcToStreamScore`),
formats/musicxml.py hands music21 an ElementTree it parsed itself (`MusicXMLImporter().xmlRootToScore`); neither has
a file path to look a cache up by.

Runtime, on the upload path of tests/upload_harness.py with music21's scratch folder pointed at a temporary one:
no pickle appears there and nothing is unpickled (audit hook), and a pickle planted where music21 would look for
an uploaded file's cached copy is never loaded (a positive control shows music21's default `parseFile` loads it).
"""

from __future__ import annotations

import ast
import inspect
import os
import pickle  # only to plant a trap for music21's cache, in this test
import re
import sys
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from upload_harness import run_upload

from musegen_core.formats.midi import piece_to_midi
from musegen_core.formats.musicxml import piece_to_mxl
from musegen_core.music import Note, Part, Piece

ROOT = Path(__file__).resolve().parents[1]
SCANNED = ("musegen_core", "pages", "app.py", "bench", "scripts")
PICKLE_MODULES = frozenset({"pickle", "cPickle", "_pickle", "dill", "cloudpickle", "shelve", "marshal", "jsonpickle"})
UNPICKLING_CALLS = frozenset({"joblib.load", "pandas.read_pickle"})
MUSIC21_PARSERS = frozenset({"parse", "parseFile", "parseURL"})
SAFE_YAML_LOADERS = frozenset({"SafeLoader", "CSafeLoader", "BaseLoader", "CBaseLoader"})
UNSAFE_YAML = frozenset({"yaml.unsafe_load", "yaml.unsafe_load_all", "yaml.full_load", "yaml.full_load_all"})
PICKLE_SUFFIXES = (".p", ".pgz", ".p.gz", ".pkl", ".pickle")
SHELL_PYTHON = re.compile(r"-c '([^']*)'")  # `"$PY" -c '…'` in a shell script


@dataclass(frozen=True)
class Finding:
    path: str
    line: int
    rule: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: {self.rule}"


class _Scanner(ast.NodeVisitor):
    """Collects `Finding`s in one module; `names` maps each imported name to what it stands for."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.names: dict[str, str] = {}
        self.findings: list[Finding] = []

    def flag(self, node: ast.AST, rule: str) -> None:
        self.findings.append(Finding(self.path, getattr(node, "lineno", 0), rule))

    def visit_Import(self, node: ast.Import) -> None:
        for alias in node.names:
            self._check_module(node, alias.name)
            top = alias.name.split(".")[0]
            self.names[alias.asname or top] = alias.name if alias.asname else top

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        module = node.module or ""
        self._check_module(node, module)
        for alias in node.names:
            self.names[alias.asname or alias.name] = f"{module}.{alias.name}"
            if alias.name in PICKLE_MODULES:  # from six.moves import cPickle
                self._check_module(node, alias.name)

    def visit_Call(self, node: ast.Call) -> None:
        name = self.qualified(node.func)
        if name:
            self._check_call(node, name)
        if name in ("importlib.import_module", "__import__") and node.args:
            argument = node.args[0]
            if isinstance(argument, ast.Constant) and isinstance(argument.value, str):
                self._check_module(node, argument.value)
        self.generic_visit(node)

    def qualified(self, expression: ast.expr) -> str | None:
        """ "numpy.load" for `np.load` after `import numpy as np`; a name not imported stands for itself."""
        if isinstance(expression, ast.Name):
            return self.names.get(expression.id, expression.id)
        if isinstance(expression, ast.Attribute):
            base = self.qualified(expression.value)
            return f"{base}.{expression.attr}" if base else None
        return None

    def _check_module(self, node: ast.AST, module: str) -> None:
        if module.split(".")[0] in PICKLE_MODULES:
            self.flag(node, f"imports {module} (it runs code from the data it loads)")

    def _check_call(self, node: ast.Call, name: str) -> None:
        root, last = name.split(".")[0], name.rsplit(".", 1)[-1]
        if name in ("eval", "exec", "builtins.eval", "builtins.exec") and not _string_literal_first(node):
            self.flag(node, f"{last}() of something other than a string literal")
        elif name in UNPICKLING_CALLS:
            self.flag(node, f"{name}() unpickles")
        elif name == "torch.load" and not _keyword_is(node, "weights_only", True):
            self.flag(node, "torch.load() without weights_only=True unpickles")
        elif name == "numpy.load" and _keyword(node, "allow_pickle") and not _keyword_is(node, "allow_pickle", False):
            self.flag(node, "numpy.load() with allow_pickle unpickles")
        elif name in ("yaml.load", "yaml.load_all") and not self._safe_yaml_loader(node):
            self.flag(node, f"{name}() without a safe Loader builds arbitrary objects")
        elif name in UNSAFE_YAML:
            self.flag(node, f"{name}() builds arbitrary objects")
        elif root == "music21" and last in MUSIC21_PARSERS and not _pickle_free(node):
            self.flag(node, f"{name}() without forceSource=True and storePickle=False may load or write a pickle")

    def _safe_yaml_loader(self, node: ast.Call) -> bool:
        loader = _keyword(node, "Loader") or (node.args[1] if len(node.args) > 1 else None)
        return loader is not None and (self.qualified(loader) or "").rsplit(".", 1)[-1] in SAFE_YAML_LOADERS


def _keyword(node: ast.Call, name: str) -> ast.expr | None:
    return next((keyword.value for keyword in node.keywords if keyword.arg == name), None)


def _keyword_is(node: ast.Call, name: str, value: bool) -> bool:
    given = _keyword(node, name)
    return isinstance(given, ast.Constant) and given.value is value


def _string_literal_first(node: ast.Call) -> bool:
    return bool(node.args) and isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str)


def _pickle_free(node: ast.Call) -> bool:
    return _keyword_is(node, "forceSource", True) and _keyword_is(node, "storePickle", False)


def scan_source(source: str, path: str) -> list[Finding]:
    scanner = _Scanner(path)
    scanner.visit(ast.parse(source, filename=path))
    return scanner.findings


def scanned_sources() -> list[tuple[str, str]]:
    """(path, Python source) of every scanned file, and of every `-c '…'` snippet of a shell script there that
    parses as Python."""
    sources = []
    for entry in SCANNED:
        top = ROOT / entry
        for path in sorted([top] if top.is_file() else top.rglob("*")):
            relative = str(path.relative_to(ROOT))
            if path.suffix == ".py":
                sources.append((relative, path.read_text(encoding="utf-8")))
            elif path.is_file() and path.read_bytes().startswith(b"#!") and b"sh" in path.read_bytes()[:40]:
                sources += [(f"{relative} (-c)", snippet) for snippet in _python_snippets(path.read_text())]
    return sources


def _python_snippets(shell: str) -> list[str]:
    snippets = []
    for snippet in SHELL_PYTHON.findall(shell):
        try:
            ast.parse(snippet)
        except SyntaxError:  # a shell command's -c, not Python
            continue
        snippets.append(snippet)
    return snippets


# --- the static scan ------------------------------------------------------------------------------------------------


def test_no_code_from_data_in_musegens_code() -> None:
    sources = scanned_sources()
    assert any(path.startswith("musegen_core/formats/") for path, _ in sources)  # the scan sees the readers
    findings = [str(finding) for path, source in sources for finding in scan_source(source, path)]
    assert findings == [], "\n".join(findings)


@pytest.mark.parametrize(
    ("source", "rule"),
    [
        ("import pickle", "imports pickle"),
        ("from cPickle import loads", "imports cPickle"),
        ("import dill as d", "imports dill"),
        ("from six.moves import cPickle", "imports cPickle"),
        ("import importlib\nimportlib.import_module('marshal')", "imports marshal"),
        ("import joblib\njoblib.load(path)", "joblib.load() unpickles"),
        ("from joblib import load\nload(path)", "joblib.load() unpickles"),
        ("import torch\ntorch.load(path)", "torch.load() without weights_only=True"),
        ("import torch\ntorch.load(path, weights_only=False)", "torch.load() without weights_only=True"),
        ("import numpy as np\nnp.load(path, allow_pickle=True)", "numpy.load() with allow_pickle"),
        ("eval(text)", "eval() of something other than a string literal"),
        ("exec(compile(text, 'x', 'exec'))", "exec() of something"),
        ("import yaml\nyaml.load(text)", "yaml.load() without a safe Loader"),
        ("import yaml\nyaml.load(text, Loader=yaml.Loader)", "yaml.load() without a safe Loader"),
        ("import yaml\nyaml.unsafe_load(text)", "yaml.unsafe_load() builds"),
        ("from music21 import converter\nconverter.parse(path)", "music21.converter.parse() without forceSource"),
        ("from music21 import converter\nconverter.parse(t, forceSource=True)", "music21.converter.parse()"),
        ("import music21\nmusic21.converter.parseFile(p, storePickle=False)", "music21.converter.parseFile()"),
        ("from music21 import corpus\ncorpus.parse('bach/bwv66.6')", "music21.corpus.parse()"),
        ("from music21.converter import parseURL as get\nget(url)", "music21.converter.parseURL()"),
    ],
)
def test_scan_flags(source: str, rule: str) -> None:
    assert [rule in str(finding) for finding in scan_source(source, "x.py")] == [True]


@pytest.mark.parametrize(
    "source",
    [
        "model.eval()\nnet.eval().cpu()",
        "eval('1 + 1')",
        "import numpy as np\nnp.load(path, allow_pickle=False)\nnp.load(path)",
        "import torch\ntorch.load(path, weights_only=True)",
        "import yaml\nyaml.safe_load(text)\nyaml.load(text, Loader=yaml.SafeLoader)",
        "from music21 import converter\nconverter.parse(path, forceSource=True, storePickle=False)",
        "from music21.converter import subConverters\nconverter = subConverters.ConverterABC()\nconverter.parseData(t)",
        "from music21 import converter\nconverter.parseData(text, format='abc')",
        "from music21.musicxml import xmlToM21\nxmlToM21.MusicXMLImporter().xmlRootToScore(root, score)",
        "import ast\nast.literal_eval(text)",
    ],
)
def test_scan_accepts(source: str) -> None:
    assert scan_source(source, "x.py") == []


def test_music21s_parse_data_has_no_cache() -> None:
    from music21 import converter

    for function in (converter.parseData, converter.Converter.parseData):
        assert "pickle" not in inspect.getsource(function).lower()


def test_shell_snippets_are_scanned() -> None:
    script = "#!/usr/bin/env bash\n\"$PY\" -c 'import pickle; print(1)'\nbash -c 'echo $(ls)'\n"
    assert _python_snippets(script) == ["import pickle; print(1)"]


# --- at run time ----------------------------------------------------------------------------------------------------


def _melody() -> Piece:
    return Piece((Part("Flute", tuple(Note(60 + i, float(i), 1.0) for i in range(8)), program=73),), title="Tune")


def _samples() -> list[tuple[str, bytes]]:
    data = Path(__file__).parent / "data"
    return [
        ("waltz.musicxml", (data / "waltz.musicxml").read_bytes()),
        ("three_tunes.abc", (data / "three_tunes.abc").read_bytes()),
        ("melody.mxl", piece_to_mxl(_melody())),
        ("melody.mid", piece_to_midi(_melody())),
    ]


@pytest.fixture
def scratch(tmp_path: Path) -> Iterator[Path]:
    """music21's scratch folder (where its pickle cache lives) pointed at an empty temporary folder."""
    from music21 import environment

    settings = environment.Environment()
    previous = settings["directoryScratch"]
    folder = tmp_path / "scratch"
    folder.mkdir()
    settings["directoryScratch"] = str(folder)
    yield folder
    settings["directoryScratch"] = previous


_unpickled: list[str] | None = None  # while a list, the audit hook below records every class unpickled


def _audit(event: str, arguments: tuple) -> None:
    if event == "pickle.find_class" and _unpickled is not None:
        _unpickled.append(".".join(map(str, arguments)))


sys.addaudithook(_audit)  # audit hooks cannot be removed: this one does nothing outside `unpickled`


@pytest.fixture
def unpickled() -> Iterator[list[str]]:
    """Every class unpickled in this process during the test (should stay empty)."""
    global _unpickled
    _unpickled = []
    yield _unpickled
    _unpickled = None


class _Trap:
    """Unpickling it creates the folder `marker` (and runs nothing else)."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple:
        return os.mkdir, (str(self.marker),)


def _plant(scratch: Path, upload: Path, marker: Path) -> None:
    """A `_Trap` where music21 looks for `upload`'s cached copy, newer than the upload (so music21 prefers it)."""
    from music21 import converter

    cached = converter.PickleFilter(upload).getPickleFp(scratch, zipType="gz")
    cached.write_bytes(zlib.compress(pickle.dumps(_Trap(marker))))
    later = upload.stat().st_mtime + 60
    os.utime(cached, (later, later))


def test_upload_path_writes_and_reads_no_pickle(scratch: Path, unpickled: list[str]) -> None:
    for name, data in _samples():
        assert run_upload(data, name).verdict == "loaded", name
    assert [p.name for p in scratch.rglob("*") if p.name.endswith(PICKLE_SUFFIXES)] == []
    assert unpickled == []


def test_a_pickle_planted_in_music21s_cache_is_never_loaded(scratch: Path, tmp_path: Path) -> None:
    for name, data in _samples():
        upload, marker = tmp_path / name, tmp_path / f"{name}.unpickled"
        upload.write_bytes(data)
        _plant(scratch, upload, marker)
        assert run_upload(data, name).verdict == "loaded", name
        assert not marker.exists(), f"uploading {name} ran a pickle from music21's cache"


def test_the_planted_pickle_would_run_under_music21s_defaults(scratch: Path, tmp_path: Path) -> None:
    """The positive control: the trap is where music21 looks, and its default `parseFile` loads it."""
    from music21 import converter

    upload, marker = tmp_path / "waltz.musicxml", tmp_path / "unpickled"
    upload.write_bytes(dict(_samples())["waltz.musicxml"])
    _plant(scratch, upload, marker)
    with pytest.raises(Exception):  # noqa: B017 - the trap is not a score: music21 fails after unpickling it
        converter.parseFile(upload)
    assert marker.exists()
