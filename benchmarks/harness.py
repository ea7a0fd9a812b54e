"""What every scenario shares: the machine, one clock, one report writer and one model
wrapper (the inputs several scenarios use are in :mod:`benchmarks.fixtures`).

A scenario opens a :class:`Run` when it starts (the date, the machine, the load average, its
command line) and hands its results to :meth:`Run.write`, which writes the JSON and the
Markdown whole or not at all (:mod:`stream_sep.atomic`). Both carry the run's facts: the JSON
under ``"run"``, the Markdown as its first lines and its last; the scenario's own tables sit
between them as it formats them (:func:`table` for a plain one). It times with
:class:`Stopwatch` (a block), :func:`timed` (one call) and :func:`timings` (repeated calls
after a warm-up).
"""

from __future__ import annotations

import json
import os
import shlex
import statistics
import sys
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

import numpy as np

from stream_sep import atomic
from stream_sep.models import providers

REPO = Path(__file__).resolve().parent.parent
RESULTS = REPO / "benchmarks" / "results"


# ---------------------------------------------------------------------------- the machine
def machine() -> str:
    """The CPU and the cores this process may use: ``"AMD EPYC 7B13, 2 cores"``."""
    return providers.cpu_description()


def load_average() -> float:
    """The 1-minute load average (what else ran: a shared machine slows every figure)."""
    return round(os.getloadavg()[0], 2)


# ---------------------------------------------------------------------------- timing
class Stopwatch:
    """Wall-clock seconds of a block (``time.perf_counter``), the one clock of the scenarios::

        with Stopwatch() as watch:
            work()
        watch.seconds

    ``elapsed`` reads the time so far, inside the block too (a pacing clock)."""

    def __enter__(self) -> Stopwatch:
        self.started = time.perf_counter()
        return self

    def __exit__(self, *exc_info) -> None:
        self.seconds = self.elapsed

    @property
    def elapsed(self) -> float:
        return time.perf_counter() - self.started


def timed(function: Callable[[], object]) -> float:
    """Seconds one call of ``function`` takes."""
    with Stopwatch() as watch:
        function()
    return watch.seconds


def timings(function: Callable[[], object], repeats: int, warm_up: bool = True) -> list[float]:
    """Seconds of each of ``repeats`` calls, after one untimed call unless ``warm_up`` is
    False."""
    if warm_up:
        function()
    return [timed(function) for _ in range(repeats)]


def median_ms(function: Callable[[], object], repeats: int, warm_up: bool = True) -> float:
    """Median milliseconds of ``repeats`` calls (:func:`timings`)."""
    return statistics.median(timings(function, repeats, warm_up)) * 1e3


# ---------------------------------------------------------------------------- reports
# Where a report keeps the facts of its run: under "run", or, in reports written before the
# harness, as top-level keys (read back by Run.recorded).
_FACT_KEYS = ("run", "date", "machine", "command", "load_average_before_after",
              "load_before", "load_after")  # fmt: skip


class Run:
    """One run of scenario ``name``: its date, the machine, the load average when it began
    and when its report is written, and the command that ran it (``argv``: the options
    after the name; None: this process's)."""

    def __init__(self, name: str, argv: list[str] | None = None):
        self.name = name
        self.argv = [str(a) for a in (sys.argv[1:] if argv is None else argv)]
        self.date = time.strftime("%Y-%m-%d %H:%M")
        self.machine = machine()
        self.load_before = load_average()
        self._recorded: dict | None = None

    @classmethod
    def recorded(cls, report: dict) -> tuple[Run, dict]:
        """The run that measured ``report`` (a scenario's JSON, read back) and the report's
        data without its facts: to write the report again from what it holds (a summary or
        a table recomputed, nothing measured). The facts are the report's own, under
        ``"run"``, or, in reports written before the harness, its top-level ``date``,
        ``machine``, ``command`` and load averages."""
        data = {key: value for key, value in report.items() if key not in _FACT_KEYS}
        facts = report.get("run")
        if facts is None:
            before, after = report.get("load_average_before_after") or (
                report.get("load_before"),
                report.get("load_after"),
            )
            facts = {
                "date": report.get("date"),
                "machine": report.get("machine"),
                "load_average_before": before,
                "load_average_after": after,
                "command": report.get("command"),
            }
        run = cls.__new__(cls)
        run._recorded = dict(facts)
        return run, data

    @property
    def command(self) -> str:
        return shlex.join(["python", "-m", "benchmarks", self.name, *self.argv])

    def facts(self) -> dict:
        """The run's facts as the JSON holds them; the load average after is read now."""
        if self._recorded is not None:
            return dict(self._recorded)
        return {
            "date": self.date,
            "machine": self.machine,
            "load_average_before": self.load_before,
            "load_average_after": load_average(),
            "command": self.command,
        }

    def write(
        self,
        json_path: Path | str | None,
        md_path: Path | str | None,
        data: dict,
        body: list[str],
        title: str | None = None,
    ) -> str:
        """Writes ``{"run": facts, **data}`` to ``json_path`` and the Markdown (``title`` as
        a heading, the facts, ``body``, the command) to ``md_path``; a path that is None is
        not written. Returns the Markdown (for the scenario to print)."""
        facts = self.facts()
        text = markdown(facts, body, title)
        if json_path is not None:
            _write(Path(json_path), json.dumps({"run": facts, **data}, indent=2) + "\n")
        if md_path is not None:
            _write(Path(md_path), text)
        return text


def markdown(facts: dict, body: list[str], title: str | None = None) -> str:
    """A report's Markdown: ``title``, the run's facts, ``body`` (the scenario's lines), the
    command."""
    lines = [f"# {title}", ""] if title else []
    lines += [
        f"Measured {facts['date']} on {facts['machine']}; load average (1 min) before / after: "
        f"{_load(facts['load_average_before'])} / {_load(facts['load_average_after'])}.",
        "",
        *body,
    ]
    while lines and not lines[-1]:
        lines.pop()
    lines += ["", f"Written by `{facts['command']}`."]
    return "\n".join(lines) + "\n"


def _load(value: float | None) -> str:
    """A load average as the Markdown gives it ("?" where a report recorded none)."""
    return "?" if value is None else f"{value:.2f}"


def in_folder(out: Path | str | None, name: str) -> tuple[Path | None, Path | None]:
    """(``out/name.json``, ``out/name.md``), or (None, None) without a folder."""
    if out is None:
        return None, None
    return Path(out) / f"{name}.json", Path(out) / f"{name}.md"


def at_stem(stem: Path | str) -> tuple[Path, Path]:
    """(``stem.json``, ``stem.md``)."""
    stem = Path(stem)
    return stem.with_suffix(".json"), stem.with_suffix(".md")


def table(header: Sequence[str], rows: Iterable[Sequence[object]]) -> list[str]:
    """A Markdown table: the header, the rule, one line per row (cells as ``str`` gives
    them)."""
    lines = ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return lines


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic.write_text(path, text)


# ---------------------------------------------------------------------------- models
class ModelProxy:
    """Stands in for a model where the engine or a plan calls one: ``separate`` goes to
    ``model`` and is counted (calls, and rows of its (B, W) input), or, with no model,
    returns zeros at once (the engine's cost without any model's; ``contract`` is then
    needed). A scenario that changes what one call does (delays, failures, reuse)
    overrides :meth:`compute`.

    ``separate``: (B, W) float32 -> (B, S, W) float32, as the model's.
    """

    def __init__(self, model=None, contract=None):
        self.model = model
        self.contract = contract if contract is not None else model.contract
        self.path = getattr(model, "path", None)
        self.provider = getattr(model, "provider", None)
        self.calls = self.rows = 0
        self._lock = threading.Lock()
        self._zeros: dict[int, np.ndarray] = {}

    def separate(self, audio: np.ndarray) -> np.ndarray:
        with self._lock:
            self.calls += 1
            self.rows += audio.shape[0]
            call = self.calls
        return self.compute(audio, call)

    def compute(self, audio: np.ndarray, call: int) -> np.ndarray:
        """The output of call number ``call`` (1, 2, ...)."""
        if self.model is not None:
            return self.model.separate(audio)
        batch = audio.shape[0]
        if batch not in self._zeros:  # preallocated per batch: no allocation while timed
            shape = (batch, len(self.contract.sources), self.contract.window_samples)
            self._zeros[batch] = np.zeros(shape, np.float32)
        return self._zeros[batch]
