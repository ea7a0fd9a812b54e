"""The speed history: the plan is chosen from the median of the last starts' measurements,
so the lowest latency one run names is what the next run chooses and accepts."""

from __future__ import annotations

import json

import pytest

from stream_sep.engine import fitting
from stream_sep.engine.fitting import SpeedProfile
from stream_sep.live import speed_history
from stream_sep.models.contract import ModelContract


@pytest.fixture(autouse=True)
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    return tmp_path / "stream-sep" / speed_history.FILE_NAME


def profile(batch: float, mid: float) -> SpeedProfile:
    return SpeedProfile((batch * 0.9, batch) * 3, (mid * 0.9, mid) * 3)


def test_typical_is_the_median_of_the_starts_90th_percentiles():
    starts = [profile(0.30, 0.15), profile(0.50, 0.26), profile(0.32, 0.16)]
    typical = fitting.typical(starts)
    assert typical.t90("batch") == pytest.approx(0.32)
    assert typical.t90("mid") == pytest.approx(0.16)
    assert fitting.typical(starts[:1]) is starts[0]
    with pytest.raises(ValueError):
        fitting.typical([])


def test_measurements_are_kept_per_key_newest_last_and_at_most_kept(cache):
    for index in range(speed_history.KEPT + 2):
        speed_history.remember("a", profile(0.1 + index / 100, 0.05), now=1000.0 + index)
    speed_history.remember("b", profile(0.9, 0.5), now=2000.0)
    kept = speed_history.recent("a", now=3000.0)
    assert len(kept) == speed_history.KEPT
    assert [p.t90("batch") for p in kept] == pytest.approx(
        [0.1 + i / 100 for i in range(2, speed_history.KEPT + 2)]
    )
    assert speed_history.recent("b", now=3000.0)[0].t90("mid") == pytest.approx(0.5)
    assert json.loads(cache.read_text()).keys() == {"a", "b"}


def test_old_measurements_and_broken_files_are_an_empty_history(cache):
    speed_history.remember("a", profile(0.2, 0.1), now=0.0)
    assert speed_history.recent("a", now=speed_history.MAX_AGE_DAYS * 86400 + 1.0) == []
    cache.write_text("{not json")
    assert speed_history.recent("a") == []
    cache.write_text(json.dumps({"a": [{"time": 1e12, "batch": "x"}], "b": 3}))
    assert speed_history.recent("a", now=1e12) == [] and speed_history.recent("b") == []
    speed_history.remember("a", profile(0.2, 0.1))  # a broken file is replaced, not kept
    assert len(speed_history.recent("a")) == 1


def test_a_cache_that_cannot_be_written_is_no_error(tmp_path, monkeypatch):
    blocker = tmp_path / "file"
    blocker.write_text("")
    monkeypatch.setenv("XDG_CACHE_HOME", str(blocker))  # a file where the folder would be
    speed_history.remember("a", profile(0.2, 0.1))
    assert speed_history.recent("a") == []


def test_the_least_recently_used_keys_go_first(monkeypatch):
    monkeypatch.setattr(speed_history, "MAX_KEYS", 3)
    for name in ("a", "b", "c"):
        speed_history.remember(name, profile(0.2, 0.1))
    speed_history.remember("a", profile(0.2, 0.1))  # a is used again: b is now the oldest
    speed_history.remember("d", profile(0.2, 0.1))
    assert speed_history.recent("b") == []
    assert all(speed_history.recent(name) for name in ("a", "c", "d"))


def test_the_refusals_lowest_latency_runs_on_the_next_start_despite_a_slow_outlier():
    """Start 1 measures normally, start 2 is refused (its measurement an outlier), start 3
    asks for the latency start 2 named and, measuring normally again, is accepted; without
    the history start 3 would choose from its own measurement alone."""
    contract = ModelContract()
    key = "model"

    def start(measured: SpeedProfile, target):
        speed_history.remember(key, measured)
        speed = fitting.typical(speed_history.recent(key))
        return fitting.choose(contract, 48000, 2, speed, target)

    start(profile(0.20, 0.11), None)
    with pytest.raises(Exception, match=r"--latency must be at least (\d+\.\d+) s") as refused:
        start(profile(0.45, 0.25), 0.3)
    lowest = float(str(refused.value).split("at least ")[1].split(" s")[0])
    # what auto chose at the moment of the refusal, from the same history
    auto = fitting.choose(contract, 48000, 2, fitting.typical(speed_history.recent(key)))
    assert auto.latency == pytest.approx(lowest, abs=0.0005)
    again = start(profile(0.21, 0.115), lowest)
    assert again.latency == pytest.approx(lowest, abs=1e-6)
    # the outlier alone would have refused it
    with pytest.raises(Exception, match="--latency must be at least"):
        fitting.choose(contract, 48000, 2, profile(0.45, 0.25), lowest)


def test_the_key_names_the_model_file_the_stream_and_the_options(tmp_path):
    class Model:
        path = tmp_path / "m.onnx"
        provider = "cpu"

    Model.path.write_bytes(b"x")
    first = speed_history.key_of(Model, 48000, 2, {"postfilter": "wiener"})
    assert first == speed_history.key_of(Model, 48000, 2, {"postfilter": "wiener"})
    assert first != speed_history.key_of(Model, 44100, 2, {"postfilter": "wiener"})
    assert first != speed_history.key_of(Model, 48000, 1, {"postfilter": "wiener"})
    assert first != speed_history.key_of(Model, 48000, 2, {"postfilter": "none"})
    Model.path.write_bytes(b"another model")
    assert first != speed_history.key_of(Model, 48000, 2, {"postfilter": "wiener"})
