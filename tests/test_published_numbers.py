"""Every figure published beside a results file is in that file.

The rule, as a reader of README.md and docs/*.md can apply it by hand:

- A **citation** is a path to a file under ``benchmarks/results/`` (``.md``, ``.json`` or
  ``.csv``), written as a Markdown link (``[latency](benchmarks/results/latency.md)``,
  relative to the document) or as inline code (```benchmarks/results/latency.md```, relative
  to the repository). Every cited file must exist.
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
- Every document is checked: README.md and every ``docs/*.md``. A figure **with a unit of
  measurement** (dB, ms, s, min, h, MB, MiB, GB, a glued ``x`` or ``%``; spelled-out
  seconds, minutes and hours too) must stand in a unit that cites a results file, unless it
  is a constant of the code listed in ``SETTINGS`` below, with its reason and the code that
  holds it (checked, so the documents follow the code). Frequencies and sample rates (Hz)
  are not held to this. Anything measured without a results file behind it goes, or becomes
  a sentence naming the command that measures it (``python -m benchmarks NAME``).
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass, field
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
DOCUMENTS = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
RESULTS = REPO / "benchmarks" / "results"

_LINK = re.compile(r"\]\(([^)\s]+)\)")
_CODE = re.compile(r"`[^`]*`")
_CITED_IN_CODE = re.compile(r"`(benchmarks/results/[^`\s]+\.(?:md|json|csv))`")
RESULT_SUFFIXES = (".md", ".json", ".csv")
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
        if results in path.parents and path.suffix in RESULT_SUFFIXES:
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


@functools.cache
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


# A figure followed by one of these units is a measurement unless SETTINGS says otherwise: a
# time, a size, a level in dB, a ratio ("1.9x") or a share ("15%"). Frequencies and sample
# rates (Hz) are left out: they describe signals and settings far more often than results.
_MEASURED = re.compile(
    r"(?<![\w.])[+\-\u2212\u00b1]?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?"
    r"(?:\s*(?:dB|ms|s|min|h|MB|MiB|GB|GiB|KB|KiB|kB|seconds?|minutes?|hours?)(?!\w)"
    r"|%|x(?!\w))"
)


@dataclass(frozen=True)
class Setting:
    """A figure with a unit that is a constant of the code, not a measurement: it may stand in
    prose that cites no results file. Each ``(path, text)`` of ``code`` must be in the
    repository, so that the documents and the code cannot drift apart."""

    reason: str
    code: tuple[tuple[str, str], ...]


# The whole allow-list, keyed by the figure as ``measured_figures_in`` gives it (sign and
# unit included, one space, seconds/minutes/hours as s/min/h). Any other setting is written
# in code (``--hop 0.5``, ```±9 dB```) or in words.
SETTINGS = {
    "5 ms": Setting(
        "the shortest crossfade, so that a fallback window never clicks",
        (("stream_sep/engine/plan.py", "MIN_CROSSFADE_SECONDS = 0.005"),),
    ),
    "10 ms": Setting(
        "a --blocksize under this is named as the likely cause of xruns",
        (("stream_sep/live/status.py", "_SMALL_BLOCK_SECONDS = 0.01"),),
    ),
    "20 ms": Setting(
        "the compute allowance's slack over twice the 90th-percentile window time",
        (("stream_sep/engine/fitting.py", "COMPUTE_SLACK = 0.02"),),
    ),
    "50 ms": Setting(
        "the live output's fades, the mode and vocal-level ramps, the key change's crossfade; "
        "the microphone room's pre-delay; the audio a recording's writer is woken for",
        (
            ("stream_sep/engine/config.py", "DEFAULT_FADE_SECONDS = 0.05"),
            ("stream_sep/engine/config.py", "ramp_seconds: float = 0.05"),
            ("stream_sep/engine/key.py", "DEFAULT_CROSSFADE_SECONDS = 0.05"),
            ("stream_sep/live/room.py", "ROOM_DELAY_SECONDS = 0.05"),
            ("stream_sep/live/recording.py", "_DRAIN_SECONDS = 0.05"),
        ),
    ),
    "100 ms": Setting(
        "the output limiter's release time constant",
        (("stream_sep/dsp/safety.py", "RELEASE_SECONDS = 0.1"),),
    ),
    "0.05 s": Setting(
        "the lookahead --latency auto gives the model",
        (("stream_sep/engine/fitting.py", "AUTO_LOOKAHEAD = 0.05"),),
    ),
    "0.25 s": Setting(
        "the live loop's tick and the reopen retry interval",
        (
            ("stream_sep/live/session.py", "_TICK_SECONDS = 0.25"),
            ("stream_sep/live/streams.py", "REOPEN_RETRY_SECONDS = 0.25"),
        ),
    ),
    "1 s": Setting(
        "how long a stuck device stream may take to close before it is abandoned",
        (("stream_sep/live/streams.py", "CLOSE_SECONDS = 1.0"),),
    ),
    "2 s": Setting(
        "a stream without a callback this long has stalled; the manifest's save interval",
        (
            ("stream_sep/live/streams.py", "STALL_SECONDS = 2.0"),
            ("stream_sep/batch/manifest.py", "SAVE_INTERVAL = 2.0"),
        ),
    ),
    "4.064 s": Setting(
        "the bundled model's window, 65,024 samples at 16 kHz",
        (("stream_sep/models/contract.py", "WINDOW_SAMPLES = 65024"),),
    ),
    "5 s": Setting(
        "the reopen deadline, the Ray address probe, the live fault tests' bound",
        (
            ("stream_sep/live/streams.py", "REOPEN_SECONDS = 5.0"),
            ("stream_sep/batch/cluster.py", "PROBE_SECONDS = 5.0"),
            ("tests/test_reliability_live.py", "FAULT_TO_EXIT_SECONDS = 5.0"),
        ),
    ),
    "10 s": Setting(
        "the most a refused Ray address takes: the probe's connection and its answer",
        (("stream_sep/batch/cluster.py", "REFUSAL_SECONDS = 2 * PROBE_SECONDS"),),
    ),
    "1%": Setting(
        "the share of callbacks with xruns above which the status line warns",
        (("stream_sep/live/status.py", "XRUN_SHARE_LIMIT = 0.01"),),
    ),
    "50%": Setting(
        "the load ceiling of --latency auto",
        (("stream_sep/engine/fitting.py", "LOAD_CEILING = 0.5"),),
    ),
    "55%": Setting(
        "the load at which a --latency target an earlier start named is still accepted",
        (("stream_sep/engine/fitting.py", "ACCEPT_CEILING = 0.55"),),
    ),
    "0.6 s": Setting(
        "what --latency auto aims at before it takes the bundled live variant",
        (("stream_sep/live/host.py", "AUTO_TARGET = 0.6"),),
    ),
    "2.016 s": Setting(
        "the bundled live variant's window, 32,256 samples at 16 kHz",
        (("stream_sep/models/bundled.py", "LIVE_WINDOW_SAMPLES = 32256"),),
    ),
    "20 MiB": Setting(
        "the most the bundled model may take of the package data",
        (("tests/test_bundled_model.py", "MAX_BUNDLED_BYTES = 20 * 1024 * 1024"),),
    ),
    "2 GiB": Setting(
        "the largest self-contained ONNX file (a protobuf message)",
        (("export/pipeline.py", "MAX_SELF_CONTAINED_BYTES = 2 * 1024**3 - 1"),),
    ),
}
_LONG_UNITS = {"second": "s", "seconds": "s", "minute": "min", "minutes": "min"}
_LONG_UNITS |= {"hour": "h", "hours": "h"}


def measured_figures_in(text: str) -> list[str]:
    """The figures of a unit's text that carry a unit of measurement, as ``"0.5 s"``."""
    text = _CODE.sub(" ", text)
    text = re.sub(r"\]\([^)]*\)", "] ", text)
    text = _DATE_OR_TIME.sub(" ", text)
    found = []
    for match in _MEASURED.finditer(text):
        figure = re.sub(r"\s+", " ", match.group(0)).replace("\u2212", "-")
        number, _, unit = figure.partition(" ")
        found.append(f"{number} {_LONG_UNITS.get(unit, unit)}" if unit else number)
    return found


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


UNCITED_UNITS = [unit for unit in ALL_UNITS if not unit.citations]


def test_every_document_is_checked():
    documents = {unit.document for unit in ALL_UNITS}
    assert REPO / "README.md" in documents
    assert {path for path in (REPO / "docs").glob("*.md") if path.read_text().strip()} <= documents


@pytest.mark.parametrize("unit", UNCITED_UNITS, ids=Unit.where)
def test_measured_figures_cite_a_results_file(unit):
    uncited = [figure for figure in measured_figures_in(unit.text) if figure not in SETTINGS]
    assert not uncited, (
        f"{unit.where()}: {uncited} stand in prose that cites no results file: cite the file "
        f"that holds them, remove them, or list a constant of the code in SETTINGS:\n{unit.text}"
    )


@pytest.mark.parametrize("figure", sorted(SETTINGS))
def test_allowed_settings_are_in_the_code(figure):
    setting = SETTINGS[figure]
    for path, code in setting.code:
        assert code in (REPO / path).read_text(), (
            f"{figure!r} is allowed as {setting.reason}, but {path} no longer holds {code!r}"
        )


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


def test_a_measured_figure_is_a_number_with_a_unit_outside_code():
    text = (
        "Took 1.38 s, then 5\n  seconds; 2.31x real time, 15% of it, -0.7 dB, 112 MB, 8.5 min;"
        " not 2 x the time, 3 songs, 48 kHz, 9 hops, `0.5 s`, -1 dBFS, 2026-11-29 17:51"
        " ([r](benchmarks/results/3_s.md))."
    )
    assert measured_figures_in(text) == [
        "1.38 s", "5 s", "2.31x", "15%", "-0.7 dB", "112 MB", "8.5 min",
    ]  # fmt: skip


def test_settings_stand_uncited_and_measurements_do_not(tmp_path):
    document = tmp_path / "doc.md"
    document.write_text(
        "A fade of 50 ms and a load ceiling of 50%.\n\nIt took 1.38 s here.\n\n"
        "It took 1.38 s ([r](benchmarks/results/r.md)).\n"
    )
    units = units_of(document, tmp_path / "benchmarks" / "results")
    uncited = [
        [figure for figure in measured_figures_in(unit.text) if figure not in SETTINGS]
        for unit in units
        if not unit.citations
    ]
    assert uncited == [[], ["1.38 s"]]


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
