"""Batch jobs: `stream-sep separate DIR -o OUT [--recursive] [--jobs N] [--ray ADDRESS|auto]`
on generated folder trees, with the tests' half model (vocals = half the mixture)."""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
import signal
import socket
import struct
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from stream_sep.batch import discovery, manifest
from stream_sep.batch.progress import JobProgress
from stream_sep.cli import main
from stream_sep.errors import UserError
from tests.helpers import sine

REPO = Path(__file__).resolve().parent.parent
STEMS = ("karaoke", "vocals")
# relative path -> (rate, channels, subtype, seconds); sines far below the model's 8 kHz band
SONGS = {
    "one.wav": (16000, 1, "PCM_16", 1.5),
    "two.flac": (44100, 2, "PCM_24", 1.2),
    "a/three.ogg": (48000, 2, "VORBIS", 1.0),
    "a/b/four.aiff": (22050, 1, "PCM_16", 1.0),
    "a/b/four.wav": (32000, 2, "FLOAT", 0.8),  # the same stem beside it: suffixes kept
}
# Each song's output folder under OUT.
KEYS = {
    "one.wav": "one",
    "two.flac": "two",
    "a/three.ogg": "a/three",
    "a/b/four.aiff": "a/b/four.aiff",
    "a/b/four.wav": "a/b/four.wav",
}
GOOD_KEYS = set(KEYS.values())
# The bad files and the summary's line for each: "  <output folder>: <the reader's reason>".
BAD = {
    "a/corrupt.wav": "  a/corrupt: cannot read audio file '{path}': ",
    "a/b/empty.wav": "  a/b/empty: audio file '{path}' holds no samples\n",
}


def _write_song(path: Path, rate: int, channels: int, subtype: str, seconds: float, seed=0):
    path.parent.mkdir(parents=True, exist_ok=True)
    tones = [sine(180 + 70 * (c + seed), seconds, rate, 0.3) for c in range(channels)]
    sf.write(path, np.stack(tones, axis=1), rate, subtype=subtype)


def _make_tree(root: Path) -> Path:
    """The generated collection: SONGS, a corrupt and an empty file, and files a folder
    search skips (not audio, hidden)."""
    for seed, (relative, spec) in enumerate(SONGS.items()):
        _write_song(root / relative, *spec, seed=seed)
    (root / "a" / "corrupt.wav").write_bytes(b"RIFF\x10\x00\x00\x00WAVEnot audio at all")
    sf.write(root / "a" / "b" / "empty.wav", np.zeros((0, 1), np.float32), 16000)
    (root / "notes.txt").write_text("not audio")
    _write_song(root / "a" / ".hidden.wav", 16000, 1, "PCM_16", 0.5)
    return root


@pytest.fixture
def tree(tmp_path):
    return _make_tree(tmp_path / "music")


def _separate(*args: str) -> int:
    return main(["separate", *args])


def _cli(*args: str, timeout: float = 180) -> subprocess.CompletedProcess:
    """`python -m stream_sep separate ARGS` as a user types it."""
    return subprocess.run(
        [sys.executable, "-m", "stream_sep", "separate", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=REPO,
    )


def _files(root: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()
    }


def _hidden(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob(".*"))


def _check_stems(source: Path, folder: Path) -> None:
    """The folder's stems are the half model's separation of ``source``: vocals half the
    song away from the ends, karaoke + vocals the song itself."""
    song, rate = sf.read(source, dtype="float32", always_2d=True)
    vocals, vocals_rate = sf.read(folder / "vocals.wav", dtype="float32", always_2d=True)
    karaoke, _ = sf.read(folder / "karaoke.wav", dtype="float32", always_2d=True)
    assert vocals_rate == rate and vocals.shape == karaoke.shape == song.shape
    interior = slice(int(0.05 * rate), -int(0.05 * rate))
    assert np.max(np.abs(vocals[interior] - 0.5 * song[interior])) < 5e-3
    assert np.max(np.abs(karaoke + vocals - song)) < 1e-6


def _manifest(out: Path) -> dict:
    return json.loads((out / manifest.NAME).read_text())["songs"]


def _stem_stats(out: Path) -> dict[str, tuple[int, int]]:
    """stem path -> (inode, mtime_ns): a stem written again gets a new inode (renamed)."""
    return {
        str(p.relative_to(out)): (p.stat().st_ino, p.stat().st_mtime_ns)
        for p in sorted(out.rglob("*.wav"))
        if p.is_file()
    }


@pytest.mark.slow
def test_a_folder_tree_is_separated_resumed_and_redone_only_where_changed(
    tree, tmp_path, half_path, capsys
):
    out = tmp_path / "out"
    args = (str(tree), "-o", str(out), "--recursive", "--model", str(half_path))
    assert _separate(*args, "--jobs", "2") == 1
    err = capsys.readouterr().err
    assert "2 of 7 songs failed:" in err
    for relative, line in BAD.items():
        assert line.format(path=tree / relative) in err, err
    songs = _manifest(out)
    assert {k for k, e in songs.items() if e["status"] == "done"} == GOOD_KEYS
    assert {k for k, e in songs.items() if e["status"] == "failed"} == {"a/corrupt", "a/b/empty"}
    for relative, key in KEYS.items():
        _check_stems(tree / relative, out / key)
        entry = songs[key]
        assert entry["input"] == str(tree / relative) and "reason" not in entry
        assert entry["seconds"] == pytest.approx(SONGS[relative][3], abs=1e-3)
        for stem in STEMS:
            written = entry["outputs"][f"{stem}.wav"]
            assert written["samples_sha256"] == manifest.samples_sha256(out / key / f"{stem}.wav")
    # Only the good songs' folders (and the manifest) exist: nothing for the bad files.
    folders = {str(p.parent.relative_to(out)) for p in out.rglob("*.wav") if p.is_file()}
    assert folders == GOOD_KEYS and _hidden(out) == []

    # A second run does nothing, says so, and still reports the failures (exit 1).
    before = _files(out)
    assert _separate(*args) == 1
    err = capsys.readouterr().err
    assert err.startswith(
        "nothing to do: 5 songs already done with this model and settings; "
        "2 failed before and are unchanged\n"
    )
    assert "2 of 7 songs failed:" in err
    assert _files(out) == before

    # Touching one input redoes that song only.
    stats = _stem_stats(out)
    os.utime(tree / "two.flac", ns=(time.time_ns(), time.time_ns()))
    assert _separate(*args) == 1
    err = capsys.readouterr().err
    assert "separated 1 song " in err and "4 songs done before skipped" in err
    changed = {path for path, stat in _stem_stats(out).items() if stats[path] != stat}
    assert changed == {"two/karaoke.wav", "two/vocals.wav"}
    assert _manifest(out)["two"]["mtime_ns"] == (tree / "two.flac").stat().st_mtime_ns
    _check_stems(tree / "two.flac", out / "two")


def test_songs_that_failed_in_a_worker_are_tried_again(tmp_path, capsys):
    """A model that fails (NaN) on every window: each song fails in the worker with the
    model's reason and retry set; the next run tries them again, unlike files the reader
    refused, which stay skipped while unchanged."""
    from tests.helpers import gain_model

    nan_model = gain_model(tmp_path / "nan.onnx", np.float32("nan"))
    songs = tmp_path / "songs"
    _write_song(songs / "x.wav", 16000, 1, "PCM_16", 1.0)
    (songs / "y.wav").write_bytes(b"not audio")
    args = (str(songs), "-o", str(tmp_path / "out"), "--model", str(nan_model), "--quiet")
    for _ in range(2):
        assert _separate(*args) == 1
        err = capsys.readouterr().err
        assert "2 of 2 songs failed:" in err and "NaN" in err
        entries = _manifest(tmp_path / "out")
        assert entries["x"]["status"] == "failed" and entries["x"]["retry"] is True
        assert entries["y"]["retry"] is False
    assert not (tmp_path / "out" / "x").exists()


def _children(pid: int) -> set[int]:
    """Processes whose parent is ``pid`` (from /proc)."""
    found = set()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                found.add(int(entry.name))
    return found


def _one_done_and_one_writing(out: Path) -> bool:
    """A song's stems are written and another song's temporary stem file exists."""
    if not out.exists() or not any(out.rglob("vocals.wav")):
        return False
    return any(p.suffix == ".wav" for p in out.rglob(".*"))


def _signal_all(pids: set[int], signum: int) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):  # a worker that has just ended
            os.kill(pid, signum)


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


@pytest.mark.slow
def test_a_job_killed_midway_is_finished_by_a_rerun_without_temporary_files(tmp_path, half_path):
    songs = tmp_path / "songs"
    for index in range(10):
        _write_song(
            songs / f"disc{index % 2}" / f"song{index}.wav", 16000, 2, "PCM_16", 30.0, index
        )
    out = tmp_path / "out"
    args = [str(songs), "-o", str(out), "--recursive", "--jobs", "2", "--model", str(half_path)]
    job = subprocess.Popen(
        [sys.executable, "-m", "stream_sep", "separate", *args, "--quiet"],
        cwd=REPO,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    deadline = time.monotonic() + 120
    workers: set[int] = set()
    running: set[int] = set()
    while time.monotonic() < deadline:
        workers |= _children(job.pid)
        if _one_done_and_one_writing(out):
            # Freeze the workers, so that none finishes its song between this look and the
            # kill (on a busy machine that gap is long), and look again.
            running = _children(job.pid)  # (not ``workers``: an ended one's pid may be reused)
            _signal_all(running, signal.SIGSTOP)
            if _one_done_and_one_writing(out):
                break
            _signal_all(running, signal.SIGCONT)
        assert job.poll() is None, f"the job ended before it was killed: {job.stderr.read()}"
        time.sleep(0.005)
    job.send_signal(signal.SIGKILL)  # the workers die with it, stopped or not (SIGKILL)
    job.wait(timeout=30)
    _signal_all(running, signal.SIGCONT)  # the pool's helpers (no death signal) end on their own
    job.stderr.close()
    # The workers die with the job (they must not go on writing into OUT).
    deadline = time.monotonic() + 10
    while any(_alive(pid) for pid in workers) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert workers and not any(_alive(pid) for pid in workers)
    left = _hidden(out)
    assert any(name.endswith(".wav") for name in left), left  # killed mid-song
    assert sum(1 for _ in out.rglob("vocals.wav")) < 10

    rerun = _cli(*args)
    assert rerun.returncode == 0, rerun.stderr
    assert _hidden(out) == []
    entries = _manifest(out)
    assert len(entries) == 10 and {e["status"] for e in entries.values()} == {"done"}
    for source in songs.rglob("*.wav"):
        _check_stems(source, out / source.parent.name / source.stem)


def _data_and_peak_time(path: Path) -> tuple[bytes, bytes]:
    """A float WAV's bytes with the PEAK chunk's time stamp zeroed, and that stamp
    (libsndfile writes the time of writing there: the only bytes two runs may differ in)."""
    data = bytearray(path.read_bytes())
    position, stamp = 12, b""
    while position + 8 <= len(data):
        name, size = (
            data[position : position + 4],
            struct.unpack("<I", data[position + 4 : position + 8])[0],
        )
        if name == b"PEAK":
            stamp = bytes(data[position + 12 : position + 16])  # after the version field
            data[position + 12 : position + 16] = b"\0\0\0\0"
        position += 8 + size + (size & 1)
    return bytes(data), stamp


@pytest.mark.slow
def test_ray_auto_writes_the_same_stems_and_manifest_as_local_workers(tree, tmp_path, half_path):
    """A local Ray instance started for the job. The stems' samples are equal, and their
    files are byte for byte equal but for the time stamp in the PEAK chunk."""
    common = (str(tree), "--recursive", "--model", str(half_path))
    local = _cli(*common, "-o", str(tmp_path / "local"), "--jobs", "2")
    assert local.returncode == 1, local.stderr
    ray = _cli(*common, "-o", str(tmp_path / "ray"), "--ray", "auto", timeout=300)
    assert ray.returncode == 1, ray.stderr
    assert "on Ray (up to 2 songs at a time)" in ray.stderr
    assert re.search(r"the model was loaded once per worker \(\d worker process", ray.stderr)
    assert _manifest(tmp_path / "ray") == _manifest(tmp_path / "local")
    local_files, ray_files = _files(tmp_path / "local"), _files(tmp_path / "ray")
    assert sorted(local_files) == sorted(ray_files)
    for name in local_files:
        if name.endswith(".wav"):
            a, _ = sf.read(tmp_path / "local" / name, dtype="float32")
            b, _ = sf.read(tmp_path / "ray" / name, dtype="float32")
            np.testing.assert_array_equal(a, b)
            assert np.array_equal(np.signbit(a), np.signbit(b)), name  # not even -0.0 vs 0.0
            without_stamp = _data_and_peak_time(tmp_path / "local" / name)[0]
            assert without_stamp == _data_and_peak_time(tmp_path / "ray" / name)[0], name


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.mark.parametrize(
    "case, message",
    [
        ("output inside", "-o/--output '{tree}/stems' is inside the input folder '{tree}'"),
        ("jobs 0", "--jobs must be a whole number of workers >= 1, got 0"),
        ("no ray", "--ray needs Ray, which is not installed: pip install stream-sep[cluster]"),
        ("unreachable", "cannot reach the Ray cluster at '127.0.0.1:{port}': Connection refused"),
        ("stems in the way", "'{out}/one/karaoke.wav' already exists; pass --overwrite"),
        ("locked", "another stream-sep job is writing to '{out}'"),
    ],
)
def test_bad_requests_are_one_line_exit_2_and_write_nothing(
    tree, tmp_path, half_path, capsys, monkeypatch, case, message
):
    import fcntl

    out, port = tmp_path / "out", _closed_port()
    args = [str(tree), "-o", str(out), "--recursive", "--model", str(half_path)]
    if case == "output inside":
        args[2] = str(tree / "stems")
    elif case == "jobs 0":
        args += ["--jobs", "0"]
    elif case == "no ray":
        monkeypatch.setitem(sys.modules, "ray", None)  # import ray: ImportError, as uninstalled
        args += ["--ray", "auto"]
    elif case == "unreachable":
        args += ["--ray", f"127.0.0.1:{port}"]
    elif case == "stems in the way":
        (out / "one").mkdir(parents=True)
        (out / "one" / "karaoke.wav").write_bytes(b"someone else's")
    elif case == "locked":
        out.mkdir()
        holder = os.open(out, os.O_RDONLY)
        fcntl.flock(holder, fcntl.LOCK_EX)
    before = _files(tmp_path)
    try:
        code = _separate(*args)
    finally:
        if case == "locked":
            os.close(holder)
    err = capsys.readouterr().err
    assert code == 2
    assert err.startswith(f"stream-sep: error: {message.format(tree=tree, out=out, port=port)}")
    assert err.count("\n") == 1, err
    assert _files(tmp_path) == before
    assert case in ("stems in the way", "locked") or not out.exists()
    assert not (tree / "stems").exists()


def test_a_manifest_that_is_not_one_is_refused(tree, tmp_path, half_path, capsys):
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / manifest.NAME).write_text("{not json")
    args = (str(tree), "-o", str(tmp_path / "out"), "--model", str(half_path))
    assert _separate(*args) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "is not a stream-sep manifest" in err
    assert "move it away to start the job afresh" in err


def test_folder_search_and_output_folders(tree, tmp_path):
    out = tmp_path / "out"
    found = discovery.find_songs([tree], out, recursive=True)
    assert {song.key for song in found} == GOOD_KEYS | {"a/corrupt", "a/b/empty"}
    # Without --recursive only the folder's own files; hidden files and other suffixes never.
    assert [s.key for s in discovery.find_songs([tree], out)] == ["one", "two"]
    # Two folders: paths from their common folder, so each keeps its name.
    _write_song(tmp_path / "other" / "one.wav", 16000, 1, "PCM_16", 0.2)
    keys = [s.key for s in discovery.find_songs([tree, tmp_path / "other"], out)]
    assert keys == ["music/one", "music/two", "other/one"]
    # Files alone: the folders `separate FILES` has always used.
    files = [tree / "a" / "three.ogg", tree / "one.wav"]
    assert [s.key for s in discovery.find_songs(files, out)] == ["three", "one"]
    (tmp_path / "nothing").mkdir()
    with pytest.raises(UserError, match=r"no audio files \(\.wav, .*\) in folder '.*nothing'"):
        discovery.find_songs([tmp_path / "nothing"], out)


def test_the_progress_bar_on_a_terminal_and_lines_elsewhere():
    terminal, log = io.StringIO(), io.StringIO()
    for stream, tty in ((terminal, True), (log, False)):
        progress = JobProgress(3, 3 * 3600.0, stream, tty=tty)
        progress.started -= 10.0  # ten seconds into the job
        progress.song_done("a/one", 3600.0, 9.0)
        progress.song_failed("cannot read audio file 'b.wav': nope", 3600.0)
        progress.close()
    # 1 h of audio in 10 s: 360x real time; the 1 h left at that speed is 10 s away.
    assert (
        "\r[################--------]  2/3 songs (1 failed)  1.00/2.00 h audio  "
        in terminal.getvalue()
    )
    assert re.search(r"3\d\d\.\dx real time  ETA 0:00:1\d", terminal.getvalue())
    assert "failed: cannot read audio file 'b.wav': nope" in terminal.getvalue()
    assert log.getvalue().splitlines() == [
        "[1/3] a/one: 3600.0 s of audio in 9.0 s",
        "[2/3] failed: cannot read audio file 'b.wav': nope",
    ]


@pytest.mark.slow
def test_the_batch_benchmark_runs(tmp_path):
    """benchmarks/bench_batch.py --smoke: every mode separates the collection (no timing
    assertions: the machine is shared)."""
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks.bench_batch", "--smoke"]
        + ["--out", str(tmp_path), "--modes", "jobs1,jobs2,ray"],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=REPO,
    )
    assert done.returncode == 0, done.stderr
    rows = json.loads((tmp_path / "batch.json").read_text())["rows"]
    assert sorted(rows) == ["jobs1", "jobs2", "ray"]
    for mode, row in rows.items():
        assert row["songs"] == 4 and row["audio_s"] == pytest.approx(8.0), mode
        # Each worker loads the model once; a worker that starts late may get no song.
        assert row["model_loads"] == row["workers"] <= (1 if mode == "jobs1" else 2), mode
        assert row["throughput_x"] > 0 and row["steady_x"] >= row["throughput_x"], mode
    assert "Ray path against the local pool" in (tmp_path / "batch.md").read_text()


def test_a_worker_runs_the_model_on_its_share_of_the_cores():
    from stream_sep.batch import local
    from stream_sep.models import providers

    cpu = providers.ProviderChoice("cpu", ["CPUExecutionProvider"], "test")
    try:
        providers.limit_cpu_threads(1)
        assert providers.session_options(cpu).intra_op_num_threads == 1
    finally:
        providers.limit_cpu_threads(None)
    assert providers.session_options(cpu).intra_op_num_threads == providers.cpu_threads()
    assert [local.threads_per_worker(jobs, cores=16) for jobs in (1, 2, 3, 16, 32)] == [
        16,
        8,
        5,
        1,
        1,
    ]
    assert local.default_jobs(cores=16) == 16 and local.default_jobs(gpu=True, cores=16) == 1


def test_model_loads_are_counted_per_job():
    """A result carries its process's count of model loads so far; the job counts its own
    (a process that ran an earlier job, as run_job called twice in one program, has loaded
    the model before)."""
    from stream_sep.batch.job import JobReport
    from stream_sep.batch.worker import SongResult

    report = JobReport(songs=5)
    report.results = [SongResult(f"s{i}", "done", worker="h:1", model_loads=3) for i in range(3)]
    report.results += [SongResult("s3", "done", worker="h:2", model_loads=1)]
    report.results += [SongResult("s4", "done", worker="h:2", model_loads=2)]  # loaded again
    assert report.model_loads == {"h:1": 1, "h:2": 2}
