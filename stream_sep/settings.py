"""The engine settings: one table of their options, defaults and checks, and the value that
carries them.

:data:`OPTIONS` lists every option of the engine, its plan and the live controls once: its
type, allowed values, default, help and where it appears (the commands that take it, the live
panel). The command-line options come from it (:func:`add_options`), the panel's controls and
limits too (:mod:`stream_sep.live.panel`), and every value is checked by its entry
(:meth:`~stream_sep.options.Option.check` from Python, :meth:`~stream_sep.options.Option.parse`
on the command line), with one wording for each refusal.

Every command builds a :class:`Settings` from its arguments (:func:`from_args`); library
callers build one directly. ``None`` means "not given": the default, or, live with
``latency="auto"``, whatever :mod:`stream_sep.engine.fitting` chooses for this machine.
:meth:`Settings.engine_config` and :meth:`Settings.offline_plan` turn it into the engine's and
the offline plans' typed configs (:class:`~stream_sep.engine.config.EngineConfig`,
:class:`~stream_sep.offline.config.OfflinePlan`).
"""

from __future__ import annotations

import argparse
import dataclasses

from stream_sep.dsp.postfilter import POSTFILTERS, load_norbert
from stream_sep.engine import fitting
from stream_sep.engine.config import EngineConfig
from stream_sep.engine.key import KEY_RANGE
from stream_sep.engine.mixer import MODES, VOCAL_LEVEL_RANGE
from stream_sep.engine.plan import (
    DEFAULT_CROSSFADE,
    DEFAULT_HOP,
    DEFAULT_LOOKAHEAD,
    MIN_CROSSFADE_SECONDS,
)
from stream_sep.engine.window import STEREO_CHOICES
from stream_sep.errors import UserError
from stream_sep.offline.config import OfflinePlan
from stream_sep.offline.overlap_add import MAX_BATCH_WINDOWS, OverlapAddConfig
from stream_sep.options import Option

MIC_LEVEL_RANGE = (0.0, 2.0)
MIC_REVERB_RANGE = (0.0, 1.0)
_PLAN_TEXT = {
    "hop": "time between windows",
    "lookahead": "future context after the last sample emitted",
    "crossfade": "blend between windows",
}
_EVALUATE_PLAN_TEXT = {
    "hop": "--streaming: seconds between windows",
    "lookahead": "--streaming: seconds of future context after the last sample used",
}


def _plan_help(name: str):
    """The help of --hop, --lookahead or --crossfade (``name``) for a command."""

    def text(command: str) -> str:
        if command == "evaluate":
            return _EVALUATE_PLAN_TEXT[name]
        if command == "live":
            return f"{_PLAN_TEXT[name]} ({_live_plan_help(name)})"
        return f"{_PLAN_TEXT[name]} (default {OPTIONS[name].default:g})"

    return text


def _live_plan_help(name: str) -> str:
    """What the live command does with --hop, --lookahead or --crossfade (``name``)."""
    chosen = {
        "hop": f"the shortest that keeps the load at or below {fitting.LOAD_CEILING:g} and "
        "spans two device blocks",
        "lookahead": f"{fitting.AUTO_LOOKAHEAD:g}, or the model's window edge if longer",
        "crossfade": f"{fitting.AUTO_CROSSFADE:g}, or the hop if shorter",
    }[name]
    return (
        f"default: chosen by --latency auto: {chosen}; giving any of --hop, --lookahead, "
        f"--crossfade turns that choice off and the ones not given are then their fixed "
        f"defaults (this one {OPTIONS[name].default:g}); refused with --latency SECONDS"
    )


def _latency_help(command: str) -> str:
    return (
        "auto (default): time the model here at start-up and take the lowest latency "
        f"whose load (the 90th percentile time per window / the hop) stays at or below "
        f"{fitting.LOAD_CEILING:g} ({fitting.LOAD_CEILING * 100:g}%%); SECONDS: exactly "
        "that latency, or one line saying the lowest possible"
    )


def _stereo_help(command: str) -> str:
    if command == "evaluate":
        return (
            "stereo mixtures: batch: both channels through the model; mid: the mid channel "
            "only, its vocal estimate on both channels (default batch)"
        )
    return "batch: both channels through the model; mid: the mid channel only, half the " + (
        "compute (default batch; --latency auto may choose mid)"
        if command == "live"
        else "compute (default batch)"
    )


_ALL = ("live", "separate", "evaluate")
TABLE = (
    Option(
        "hop",
        "seconds",
        DEFAULT_HOP,
        _plan_help("hop"),
        strict=True,
        metavar="SECONDS",
        commands=_ALL,
    ),
    Option(
        "lookahead",
        "seconds",
        DEFAULT_LOOKAHEAD,
        _plan_help("lookahead"),
        metavar="SECONDS",
        commands=_ALL,
    ),
    Option(
        "crossfade",
        "seconds",
        DEFAULT_CROSSFADE,
        _plan_help("crossfade"),
        low=MIN_CROSSFADE_SECONDS,
        metavar="SECONDS",
        commands=("live", "separate"),
    ),
    Option("stereo", "choice", "batch", _stereo_help, choices=STEREO_CHOICES, commands=_ALL),
    Option(
        "latency",
        "latency",
        "auto",
        _latency_help,
        metavar="auto|SECONDS",
        unset="auto",
        commands=("live",),
    ),
    Option(
        "postfilter",
        "choice",
        # On by default: it won on every fold of the cross-validated measure (README, "The
        # host's quality options") for about 1-2% of a window's compute.
        "wiener",
        "re-filter each window's estimate with norbert's Wiener filter (the model's "
        "vocals and the mixture minus them as the two sources); wiener-em adds an EM "
        "iteration; none: the model's estimate as it is (default wiener)",
        choices=POSTFILTERS,
        commands=_ALL,
    ),
    Option(
        "high_band_voice_removal",
        "number",
        0.0,
        "0..1: at stream rates above the model's, also remove this share of the input "
        "above the model's band where the model hears voice at the top of its band "
        "(sibilants a 16 kHz model cannot see; default 0)",
        high=1.0,
        metavar="FRACTION",
        commands=_ALL,
    ),
    Option(
        "denoise",
        "flag",
        # Off by default: +0.06 dB on the cross-validated measure (every fold gains a little)
        # for twice the model's compute (README, "The host's quality options").
        False,
        "separate every window twice, as it is and sign-inverted, and average the two "
        "estimates: what the network adds whatever the input's sign cancels (Ultimate "
        "Vocal Remover's Denoise Output); twice the model's compute (default off)",
        commands=_ALL,
    ),
    Option(
        "like_live",
        "flag",
        False,
        "run the live plan (hop, lookahead, crossfade) so the stems equal a live run; "
        "default: the throughput plan (centred overlap-add windows, several times faster; "
        "--hop/--lookahead/--crossfade apply only with --like-live)",
        unset=False,
        commands=("separate",),
    ),
    Option(
        "batch_windows",
        "whole",
        None,
        "windows per model call in the throughput plan, each with all its channels "
        "(default: one stereo window or two mono ones); not with --like-live",
        low=1,
        high=MAX_BATCH_WINDOWS,
        unit="windows",
        metavar="N",
        commands=("separate",),
    ),
    Option(
        "mode",
        "choice",
        "karaoke",
        "karaoke: vocals removed; vocals: vocals alone; bypass: the delayed input "
        "(default karaoke)",
        choices=MODES,
        unset="karaoke",
        commands=("live",),
        panel=True,
    ),
    Option(
        "vocal_level",
        "number",
        None,
        f"karaoke with the vocals at G, {VOCAL_LEVEL_RANGE[0]:g} to {VOCAL_LEVEL_RANGE[1]:g} "
        "(0 none, 1 original)",
        low=VOCAL_LEVEL_RANGE[0],
        high=VOCAL_LEVEL_RANGE[1],
        metavar="G",
        commands=("live",),
        panel=True,
    ),
    Option(
        "key",
        "whole",
        None,
        f"change the key by SEMITONES, {KEY_RANGE[0]} to +{KEY_RANGE[1]} (the music in "
        "karaoke, everything in the other modes; also live with the [ and ] keys and the "
        "panel). Adds Rubber Band's fixed delay to the latency whatever the key, so 0 turns "
        "key change on unshifted; needs pip install 'stream-sep[night]' (default: no key "
        "change, no delay)",
        low=KEY_RANGE[0],
        high=KEY_RANGE[1],
        unit="semitones",
        metavar="SEMITONES",
        commands=("live",),
        panel=True,
    ),
    Option(
        "mic_level",
        "number",
        1.0,
        f"the microphone's gain, {MIC_LEVEL_RANGE[0]:g} to {MIC_LEVEL_RANGE[1]:g} (default 1; "
        "also on the panel); only with --mic",
        low=MIC_LEVEL_RANGE[0],
        high=MIC_LEVEL_RANGE[1],
        metavar="G",
        commands=("live",),
        panel=True,
    ),
    Option(
        "mic_reverb",
        "number",
        0.0,
        f"room reverb on the microphone, {MIC_REVERB_RANGE[0]:g} (none, the default) to "
        f"{MIC_REVERB_RANGE[1]:g}; only with --mic; needs pip install 'stream-sep[night]' "
        "(pedalboard)",
        low=MIC_REVERB_RANGE[0],
        high=MIC_REVERB_RANGE[1],
        metavar="AMOUNT",
        commands=("live",),
    ),
)
OPTIONS = {option.name: option for option in TABLE}
PANEL_FIELDS = tuple(option.name for option in TABLE if option.panel)

_PLAN_FIELDS = ("hop", "lookahead", "crossfade")
WINDOW_FIELDS = ("postfilter", "high_band_voice_removal", "denoise")
ENGINE_FIELDS = (*_PLAN_FIELDS, "stereo", *WINDOW_FIELDS)
OFFLINE_FIELDS = (
    "like_live",
    "batch_windows",
)  # the plan of a whole signal (Settings.offline_plan)
DEFAULTS = {name: OPTIONS[name].default for name in ENGINE_FIELDS}


@dataclasses.dataclass(frozen=True)
class Settings:
    """hop, lookahead, crossfade: seconds (see :mod:`stream_sep.engine.plan`); stereo: 'batch'
    (every channel through the model) or 'mid' (the mid channel only, half the compute);
    latency: 'auto', a number of seconds, or None (use the plan options as given);
    postfilter: 'none', 'wiener' or 'wiener-em' (:mod:`stream_sep.dsp.postfilter`);
    high_band_voice_removal: 0..1, the share of the voice above the model's band removed in
    karaoke (:mod:`stream_sep.engine.highband`); denoise: separate every window as it is
    and sign-inverted and average the two (:func:`stream_sep.models.families.separate_rows`).
    Each is checked by its entry of :data:`OPTIONS`."""

    hop: float | None = None
    lookahead: float | None = None
    crossfade: float | None = None
    stereo: str | None = None
    latency: float | str | None = None
    postfilter: str | None = None
    high_band_voice_removal: float | None = None
    denoise: bool | None = None

    def __post_init__(self):
        for name in (*ENGINE_FIELDS, "latency"):
            value = getattr(self, name)
            if value is not None:
                OPTIONS[name].check(value)
        if self.postfilter not in (None, "none"):
            load_norbert()  # a missing package is one line before any model loads
        if self.latency not in (None, "auto") and self.plan_given:
            raise UserError(
                "--latency chooses hop, lookahead and crossfade itself: give either "
                "--latency or --hop/--lookahead/--crossfade"
            )

    @property
    def plan_given(self) -> bool:
        """Whether any of hop, lookahead or crossfade was given explicitly."""
        return any(getattr(self, name) is not None for name in _PLAN_FIELDS)

    @property
    def fitted(self) -> bool:
        """Whether the plan is to be chosen from the measured speed (``--latency``)."""
        return self.latency is not None and not (self.latency == "auto" and self.plan_given)

    def engine_options(self) -> dict:
        """hop, lookahead, crossfade, stereo and the window options for the engine,
        defaults filled in."""
        return {name: self._value(name) for name in ENGINE_FIELDS}

    def window_options(self) -> dict:
        """postfilter, high_band_voice_removal and denoise, defaults filled in: what a speed
        measurement depends on besides the model and the stream
        (:func:`stream_sep.live.speed_history.key_of`)."""
        return {name: self._value(name) for name in WINDOW_FIELDS}

    def engine_config(self, base: EngineConfig | None = None) -> EngineConfig:
        """The engine's typed config: ``base`` (default: the engine's defaults) with these
        settings' plan, stereo handling and window options, defaults filled in."""
        return EngineConfig.of(base, **self.engine_options())

    def offline_plan(
        self, like_live: bool = False, batch_windows: int | None = None
    ) -> OfflinePlan:
        """How :mod:`stream_sep.offline` separates a whole signal with these settings:
        ``like_live``, the streaming engine with :meth:`engine_config`; otherwise the
        throughput plan with this stereo handling and these window options, ``batch_windows``
        windows per model call (None: its default; not with ``like_live``)."""
        like_live = OPTIONS["like_live"].check(like_live)
        if batch_windows is not None:
            batch_windows = OPTIONS["batch_windows"].check(batch_windows)
            if like_live:
                raise UserError("--batch-windows sets the throughput plan; --like-live has none")
        engine = self.engine_config()
        windows = {name: getattr(engine, name) for name in ("stereo", *WINDOW_FIELDS)}
        overlap_add = OverlapAddConfig(batch_windows=batch_windows, **windows)
        return OfflinePlan(like_live, engine, overlap_add)

    def _value(self, name: str):
        value = getattr(self, name)
        return OPTIONS[name].default if value is None else value


def add_options(parser, command: str, names: tuple[str, ...]) -> None:
    """Add the options ``names`` of :data:`OPTIONS` to ``parser`` (an argparse parser or
    group) as ``command`` shows them: type, allowed values, help and metavar from the table."""
    for name in names:
        option = OPTIONS[name]
        if command not in option.commands:
            raise ValueError(f"{option.flag} is not an option of {command}")
        parser.add_argument(option.flag, **option.arguments(command))


def add_arguments(parser: argparse.ArgumentParser, live: bool = False) -> None:
    """The engine's plan options of a command; ``live`` adds ``--latency`` (default auto)."""
    command = "live" if live else "separate"
    add_options(parser, command, ("latency",) if live else ())
    add_options(parser, command, (*_PLAN_FIELDS, "stereo"))


def add_quality_arguments(parser: argparse.ArgumentParser, command: str = "separate") -> None:
    """--postfilter, --high-band-voice-removal and --denoise (the per-window quality
    options)."""
    add_options(parser, command, WINDOW_FIELDS)


def from_args(args: argparse.Namespace) -> Settings:
    return Settings(**{name: getattr(args, name, None) for name in (*ENGINE_FIELDS, "latency")})
