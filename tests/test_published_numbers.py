"""Every figure published beside a results file is in that file.

The rule, as a reader of README.md and docs/*.md can apply it by hand:

- A **citation** is a path to a file under ``benchmarks/results/`` (``.md`` or ``.json``),
  written as a Markdown link (``[latency](benchmarks/results/latency.md)``, relative to the
  document) or as inline code (```benchmarks/results/latency.md```, relative to the
  repository). Every cited file must exist.
- A citation covers its **unit**: the paragraph it stands in (lines between blank lines,
  outside fenced code blocks), or the table row it stands in. A table's rows are also covered
  by the citations of its caption: the paragraph right above the table.
- Every **figure** in a covered unit must appear in one of the unit's cited files. A figure
  is a number written in the prose: ``9.32``, ``+0.13``, ``5,550``, ``1.9x``, ``16.3 MB``
  (signs and thousands separators are ignored; a letter may follow only as a unit: x, s, ms,
  min, h, dB, Hz, kHz, MB, MiB, GB, KB, KiB, M, %). It *appears* in a file when the file
  holds a number that rounds to it at the figure's own number of decimals (``0.804`` matches
  ``0.8040``; ``9.3`` matches ``9.32``).
- Not figures, so not checked: anything inside inline code (commands, option values, file
  names), link targets, dates (``2026-11-29``) and clock times (``17:51``), and numbers glued
  to letters that are not units (``MIR-1K``, ``float32``, ``6th``). A count or setting that is
  not in the cited file is written in words or in code, or stands in a paragraph that cites
  nothing.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
DOCUMENTS = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
RESULTS = REPO / "benchmarks" / "results"

_LINK = re.compile(r"\]\(([^)\s]+)\)")
_CODE = re.compile(r"`[^`]*`")
_CITED_IN_CODE = re.compile(r"`(benchmarks/results/[^`\s]+\.(?:md|json))`")
_DATE_OR_TIME = re.compile(r"\b\d{4}-\d{2}-\d{2}\b|\b\d{1,2}:\d{2}\b")
UNITS = ("x", "s", "ms", "min", "h", "dB", "Hz", "kHz", "MB", "MiB", "GB", "KB", "KiB", "M")
# A number not glued to a word before it (MIR-1K's "1" is glued after; see below).
_FIGURE = re.compile(
    r"(?<![\w.])[+\-\u2212\u00b1]?(\d{1,3}(?:,\d{3})+|\d+)(\.\d+)?(e-?\d+)?(?P<after>[A-Za-z]*)"
)
_FILE_NUMBER = re.compile(r"\d+(?:\.\d+)?(?:[eE][+-]?\d+)?")


@dataclass
class Unit:
    """One paragraph or table row of a document, with the results files it cites."""

    document: Path
    line: int
    text: str
    citations: list[Path] = field(default_factory=list)

    def where(self) -> str:
        return f"{self.document.relative_to(REPO)}:{self.line}"


def citations_in(text: str, document: Path, results: Path = RESULTS) -> list[Path]:
    """The files under ``results`` that ``text`` (from ``document``) cites, resolved."""
    found = []
    for target in _LINK.findall(text):
        path = (document.parent / target.split("#")[0]).resolve()
        if results in path.parents and path.suffix in (".md", ".json"):
            found.append(path)
    repository = results.parent.parent
    found += [repository / cited for cited in _CITED_IN_CODE.findall(text)]
    return found


def units_of(document: Path, results: Path = RESULTS) -> list[Unit]:
    """The paragraphs and table rows of a document, each with its citations (a table's rows
    with its caption's too)."""
    units: list[Unit] = []
    paragraph: list[str] = []
    start = 0
    fenced = False
    caption: list[Path] = []
    in_table = False

    def close_paragraph() -> None:
        nonlocal paragraph, caption
        if paragraph:
            text = "\n".join(paragraph)
            unit = Unit(document, start, text, citations_in(text, document, results))
            units.append(unit)
            caption = unit.citations
            paragraph = []

    for number, line in enumerate(document.read_text().splitlines(), 1):
        stripped = line.strip()
        if stripped.startswith("```"):
            close_paragraph()
            fenced = not fenced
            caption, in_table = [], False
            continue
        if fenced:
            continue
        if stripped.startswith("|"):
            close_paragraph()
            if not in_table:
                in_table = True
                table_caption = caption
            row = Unit(document, number, stripped, citations_in(stripped, document, results))
            row.citations = table_caption + row.citations
            units.append(row)
            continue
        if in_table:
            in_table, caption = False, []
        if not stripped or stripped.startswith("#"):
            close_paragraph()
            if stripped:
                caption = []
            continue
        if not paragraph:
            start = number
        paragraph.append(line)
    close_paragraph()
    return units


def figures_in(text: str) -> list[str]:
    """The figures of a unit's text, as written (without sign or thousands separators)."""
    text = _CODE.sub(" ", text)
    text = re.sub(r"\]\([^)]*\)", "] ", text)
    text = _DATE_OR_TIME.sub(" ", text)
    figures = []
    for match in _FIGURE.finditer(text):
        after = match.group("after")
        if after and after not in UNITS:
            continue
        figures.append(
            match.group(1).replace(",", "") + (match.group(2) or "") + (match.group(3) or "")
        )
    return figures


def numbers_in(path: Path) -> list[float]:
    """Every number written in a results file."""
    return [float(token) for token in _FILE_NUMBER.findall(path.read_text())]


def appears(figure: str, numbers: list[float]) -> bool:
    """Whether a number of the file rounds to ``figure`` at the figure's decimals."""
    mantissa, _, exponent = figure.partition("e")
    decimals = len(mantissa.split(".")[1]) if "." in mantissa else 0
    value = float(figure)
    half = 0.5 * 10 ** (int(exponent or 0) - decimals)
    return any(abs(abs(number) - value) <= half + 1e-9 for number in numbers)


ALL_UNITS = [unit for document in DOCUMENTS for unit in units_of(document)]
CITING_UNITS = [unit for unit in ALL_UNITS if unit.citations]


def test_the_documents_cite_results_files():
    assert len({unit.document for unit in CITING_UNITS}) >= 3
    assert len({path for unit in CITING_UNITS for path in unit.citations}) >= 10


@pytest.mark.parametrize("unit", CITING_UNITS, ids=Unit.where)
def test_cited_results_files_exist(unit):
    missing = [str(path.relative_to(REPO)) for path in unit.citations if not path.is_file()]
    assert not missing, f"{unit.where()} cites files that do not exist: {missing}"


@pytest.mark.parametrize("unit", CITING_UNITS, ids=Unit.where)
def test_cited_figures_are_in_the_cited_files(unit):
    existing = [path for path in unit.citations if path.is_file()]
    numbers = [number for path in dict.fromkeys(existing) for number in numbers_in(path)]
    absent = [figure for figure in figures_in(unit.text) if not appears(figure, numbers)]
    cited = ", ".join(str(path.relative_to(REPO)) for path in dict.fromkeys(unit.citations))
    assert not absent, f"{unit.where()}: {absent} are not in {cited}:\n{unit.text}"


# The rule itself, on made-up text, so that a change to the parser cannot make it vacuous.


def test_a_figure_is_a_number_in_prose_not_in_code_dates_or_names(tmp_path):
    text = (
        "Measured 2026-11-29 17:51 on MIR-1K: **9.32 ± 0.51 dB**, +0.13 dB, 5,550 steps, 1.9x,"
        " 16.3 MB, 7e-8, every 6th clip, float32, `--hop 0.25` ([r](benchmarks/results/x.md))."
    )
    assert figures_in(text) == ["9.32", "0.51", "0.13", "5550", "1.9", "16.3", "7e-8"]


def test_a_figure_appears_when_a_number_of_the_file_rounds_to_it():
    assert appears("0.804", [0.80401])
    assert appears("9.3", [9.32])
    assert appears("0.13", [-0.131])
    assert not appears("9.33", [9.32])
    assert not appears("203", [201.4])
    assert appears("7e-8", [7.4e-8])
    assert not appears("7e-8", [6.4e-8])


def test_table_rows_take_their_captions_citations(tmp_path):
    results = tmp_path / "benchmarks" / "results"
    results.mkdir(parents=True)
    document = tmp_path / "doc.md"
    document.write_text(
        "Caption ([r](benchmarks/results/r.md)):\n\n| a | b |\n| --- | --- |\n| 1.5 | 2 |\n\n"
        "After `benchmarks/results/s.json`.\n\n# Heading\n\n| 3 |\n"
    )
    units = units_of(document, results)
    rows = [unit for unit in units if unit.text.startswith("|")]
    assert [unit.citations for unit in rows[:3]] == [[results / "r.md"]] * 3
    assert rows[3].citations == []
    assert [unit.citations for unit in units if unit.text.startswith("After")] == [
        [results / "s.json"]
    ]
