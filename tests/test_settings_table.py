"""The options table (stream_sep.settings.OPTIONS) is the one source of the engine's options:
the commands' options, the panel's controls and limits and every check come from it, and an
option refuses a bad value with one wording whether it was typed or given from Python."""

from __future__ import annotations

import dataclasses

import pytest

from stream_sep import cli, settings
from stream_sep.engine import Separator
from stream_sep.engine.config import EngineConfig
from stream_sep.errors import UserError
from stream_sep.live.controls import Controls
from stream_sep.live.panel import Panel
from stream_sep.live.panel.page import page
from stream_sep.offline.overlap_add import OverlapAddConfig
from stream_sep.settings import OPTIONS, Settings
from tests.helpers import FAST_OPTIONS

# One value outside each option's range, as typed and as given from Python.
BAD = {
    "hop": ("0", 0),
    "lookahead": ("-1", -1),
    "crossfade": ("0.001", 0.001),
    "stereo": ("side", "side"),
    "latency": ("-2", -2),
    "postfilter": ("loud", "loud"),
    "high_band_voice_removal": ("2", 2),
    "mode": ("loud", "loud"),
    "vocal_level": ("3", 3),
    "key": ("7", 7),
    "mic_level": ("-1", -1),
    "mic_reverb": ("1.5", 1.5),
    "batch_windows": ("0", 0),
}


def _help(argv: list[str], capsys, monkeypatch) -> str:
    monkeypatch.setenv("COLUMNS", "2000")
    with pytest.raises(SystemExit) as ended:
        cli.main([*argv, "--help"])
    assert ended.value.code == 0
    return capsys.readouterr().out


def test_every_option_of_the_table_is_an_option_of_the_commands_it_names(capsys, monkeypatch):
    helps = {
        "live": _help([], capsys, monkeypatch),
        "separate": _help(["separate"], capsys, monkeypatch),
        "evaluate": _help(["evaluate"], capsys, monkeypatch),
    }
    for option in settings.TABLE:
        assert option.commands, option.name
        for command in option.commands:
            line = next(
                (
                    text
                    for text in helps[command].splitlines()
                    if text.startswith(f"  {option.flag}")
                ),
                None,
            )
            assert line is not None, f"{option.flag} missing from {command} --help"
            text = option.help(command) if callable(option.help) else option.help
            words = " ".join(text.replace("%%", "%").split())
            assert words in " ".join(helps[command].split()), (command, option.flag)


@pytest.mark.parametrize("name", sorted(BAD))
def test_typed_and_given_values_are_refused_with_one_wording(name):
    option = OPTIONS[name]
    text, value = BAD[name]
    with pytest.raises(UserError) as typed:
        option.parse(text)
    with pytest.raises(UserError) as given:
        option.check(value)
    shown = repr(text) if option.kind == "choice" else text
    assert str(typed.value) == f"{option.flag} must be {option.allowed}, got {shown}"
    assert str(given.value) == f"{option.flag} must be {option.allowed}, got {value!r}"
    default = option.default if option.default is not None else (option.low or 0)
    if option.kind != "flag":
        assert option.check(default) == default  # the default itself is allowed


@pytest.mark.parametrize("name", ["hop", "crossfade", "stereo", "postfilter", "mic_reverb"])
def test_the_command_line_refuses_with_the_tables_line(name, capsys):
    text, _ = BAD[name]
    code = cli.main([OPTIONS[name].flag, text, "--input", "mic", "--output", "headphones"])
    err = capsys.readouterr().err
    shown = repr(text) if OPTIONS[name].kind == "choice" else text
    assert code == 2
    assert (
        err
        == f"stream-sep: error: {OPTIONS[name].flag} must be {OPTIONS[name].allowed}, got {shown}\n"
    )


def test_settings_check_every_field_through_the_table():
    for name in (*settings.ENGINE_FIELDS, "latency"):
        if name in BAD:
            _, value = BAD[name]
            with pytest.raises(UserError) as refused:
                Settings(**{name: value})
            assert str(refused.value) == str(OPTIONS[name].refusal(repr(value)))
    with pytest.raises(UserError, match="denoise must be True or False, got 'yes'"):
        Settings(denoise="yes")


def test_settings_convert_to_the_typed_configs():
    chosen = Settings(hop=0.2, stereo="mid", postfilter="none", high_band_voice_removal=0.5)
    config = chosen.engine_config()
    assert isinstance(config, EngineConfig)
    options = chosen.engine_options()
    assert {name: getattr(config, name) for name in options} == options
    assert config.mode == EngineConfig().mode  # what the settings do not hold stays the engine's
    plan = chosen.offline_plan(like_live=False, batch_windows=3)
    assert not plan.like_live and plan.engine == config
    assert plan.overlap_add == OverlapAddConfig(
        batch_windows=3, stereo="mid", postfilter="none", high_band_voice_removal=0.5
    )
    assert plan.stereo == "mid"
    assert Settings().offline_plan(like_live=True).like_live
    with pytest.raises(UserError, match="^--batch-windows sets the throughput plan"):
        Settings().offline_plan(like_live=True, batch_windows=2)
    with pytest.raises(UserError, match=r"^--batch-windows must be a whole number of windows"):
        Settings().offline_plan(batch_windows=2.0)


def test_the_panel_takes_its_controls_and_limits_from_the_table(half, monkeypatch):
    assert settings.PANEL_FIELDS == ("mode", "vocal_level", "key", "mic_level")
    wider = dataclasses.replace(OPTIONS["vocal_level"], high=1.5)
    key = dataclasses.replace(OPTIONS["key"], low=-3, high=4)
    monkeypatch.setitem(OPTIONS, "vocal_level", wider)
    monkeypatch.setitem(OPTIONS, "key", key)
    text = page("token")
    assert '<input id="vocal-level" type="range" min="0" max="1.5"' in text
    assert "Math.max(-3,state.key-1)" in text and "Math.min(4,state.key+1)" in text
    for mode in OPTIONS["mode"].choices:
        assert f'data-mode="{mode}"' in text
    with Separator(half, 16000, 2, key=0, blocking=True, **FAST_OPTIONS) as engine:
        panel = Panel(Controls(engine))
        try:
            with pytest.raises(UserError, match=r"--vocal-level must be a number in \[0, 1.5\]"):
                panel.control({"vocal_level": 1.8})
            assert engine.vocal_level != 1.8
            panel.control({"vocal_level": 1.2})
            assert engine.vocal_level == 1.2
            with pytest.raises(UserError, match="unknown control 'hop'; allowed: mode, "):
                panel.control({"hop": 0.1})
        finally:
            panel.server.server_close()
