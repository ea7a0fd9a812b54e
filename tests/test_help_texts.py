"""--help says what the code does: the numbers come from the constants the code uses (a
changed constant changes the help), and what the help promises is checked against the
behaviour behind it."""

from __future__ import annotations

import re
import shutil

import numpy as np
import pytest
import soundfile as sf

from stream_sep import cli, settings
from stream_sep.engine import fitting
from stream_sep.errors import UserError
from stream_sep.models import shelf
from tests.helpers import sine


@pytest.fixture(autouse=True)
def wide_terminal(monkeypatch):
    """Help unwrapped: each option and its text on one line."""
    monkeypatch.setenv("COLUMNS", "2000")


def _help(argv: list[str], capsys) -> str:
    """The help ``stream-sep ARGV --help`` prints."""
    with pytest.raises(SystemExit) as ended:
        cli.main([*argv, "--help"])
    assert ended.value.code == 0
    return capsys.readouterr().out


def test_the_latency_help_states_the_load_ceiling_the_fitting_uses(capsys, monkeypatch):
    text = _help([], capsys)
    ceiling = fitting.LOAD_CEILING
    assert f"stays at or below {ceiling:g} ({ceiling * 100:g}%)" in text
    assert "60%" not in text
    monkeypatch.setattr(fitting, "LOAD_CEILING", 0.37)  # the help follows the constant
    assert "stays at or below 0.37 (37%)" in _help([], capsys)


def test_the_live_plan_options_help_says_what_latency_auto_does(capsys):
    text = _help([], capsys)
    for name in ("hop", "lookahead", "crossfade"):
        option = re.search(rf"^  --{name} SECONDS +(.*)$", text, re.MULTILINE).group(1)
        assert "chosen by --latency auto" in option, option
        assert f"(this one {settings.DEFAULTS[name]:g})" in option, option
        assert "refused with --latency SECONDS" in option, option
    assert f"auto: {fitting.AUTO_LOOKAHEAD:g}, or the model's window edge" in text
    assert f"auto: {fitting.AUTO_CROSSFADE:g}, or the hop if shorter" in text
    # What the help promises: auto chooses the plan; one plan option given turns that off
    # and the others take their fixed defaults; with --latency SECONDS it is refused.
    assert settings.Settings(latency="auto").fitted
    given = settings.Settings(latency="auto", hop=0.3)
    assert not given.fitted
    options = given.engine_options()
    assert options["hop"] == 0.3
    assert options["lookahead"] == settings.DEFAULTS["lookahead"]
    assert options["crossfade"] == settings.DEFAULTS["crossfade"]
    with pytest.raises(UserError, match="give either --latency or --hop"):
        settings.Settings(latency=0.5, hop=0.3)
    # separate has no --latency: its defaults are the fixed ones.
    separate = _help(["separate"], capsys)
    hop = re.search(r"^  --hop SECONDS +(.*)$", separate, re.MULTILINE).group(1)
    assert hop == f"time between windows (default {settings.DEFAULTS['hop']:g})"


@pytest.mark.parametrize("action", ["list", "measure", "remove"])
def test_each_models_action_has_a_description(action, capsys, monkeypatch):
    text = _help(["models", action], capsys)
    description = text.split("\n\n")[1]  # usage, description, then the arguments
    assert not description.startswith(("positional arguments:", "options:")), text
    assert len(description.split()) > 15, text
    if action == "measure":
        assert f"time {fitting.TIMED_WINDOWS} windows" in text
        assert f"stays at or below {fitting.LOAD_CEILING:g}" in text
        monkeypatch.setattr(fitting, "LOAD_CEILING", 0.37)
        assert "stays at or below 0.37" in _help(["models", action], capsys)
    elif action == "list":
        assert f"set {shelf.ENV_VAR}" in text
    else:
        assert f"({shelf.BUNDLED_NAME}) cannot be removed" in text


def test_model_names_from_the_shelf_work_where_the_help_says_so(
    capsys, tmp_path, monkeypatch, half_path
):
    """--model takes PATH or NAME: a shelf name separates files, and folders (a batch job)."""
    for command in ([], ["separate"]):
        assert "--model PATH|NAME" in _help(command, capsys)
        assert f"{shelf.BUNDLED_NAME} is the bundled one" in _help(command, capsys)
    folder = tmp_path / "shelf"
    folder.mkdir()
    shutil.copyfile(half_path, folder / "half.onnx")
    monkeypatch.setenv(shelf.ENV_VAR, str(folder))
    monkeypatch.chdir(tmp_path)  # no file named "half" here: the name is the shelf's
    songs = tmp_path / "songs"
    songs.mkdir()
    rate = 16000
    sf.write(songs / "a.wav", sine(220, 0.5, rate, 0.3)[:, None], rate)
    for inputs, out in (([str(songs / "a.wav")], "files"), ([str(songs)], "batch")):
        code = cli.main(["separate", *inputs, "-o", out, "--model", "half", "--quiet"])
        assert code == 0, capsys.readouterr().err
        vocals, _ = sf.read(tmp_path / out / "a" / "vocals.wav", dtype="float32")
        song, _ = sf.read(songs / "a.wav", dtype="float32")
        middle = slice(int(0.05 * rate), -int(0.05 * rate))
        assert np.max(np.abs(vocals[middle] - 0.5 * song[middle])) < 5e-3
