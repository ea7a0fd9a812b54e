"""The engine settings: one owner of their defaults, their validation and their options.

Every command builds a :class:`Settings` from its arguments (:func:`from_args`); library
callers build one directly. ``None`` means "not given": the default, or, live with
``latency="auto"``, whatever :mod:`stream_sep.engine.fitting` chooses for this machine.
"""

from __future__ import annotations

import argparse
import dataclasses
import math

from stream_sep import options
from stream_sep.dsp.postfilter import POSTFILTERS, check_postfilter, load_norbert
from stream_sep.engine import fitting
from stream_sep.engine.highband import check_removal
from stream_sep.engine.plan import (
    DEFAULT_CROSSFADE,
    DEFAULT_HOP,
    DEFAULT_LOOKAHEAD,
    MIN_CROSSFADE_SECONDS,
)
from stream_sep.engine.window import STEREO_CHOICES
from stream_sep.errors import UserError
from stream_sep.models.families import check_denoise

DEFAULTS = {
    "hop": DEFAULT_HOP,
    "lookahead": DEFAULT_LOOKAHEAD,
    "crossfade": DEFAULT_CROSSFADE,
    "stereo": "batch",
    # On by default: it won on every fold of the cross-validated measure (README, "The host's
    # quality options") for about 1-2% of a window's compute.
    "postfilter": "wiener",
    "high_band_voice_removal": 0.0,
    # Off by default: +0.06 dB on the cross-validated measure (every fold gains a little)
    # for twice the model's compute (README, "The host's quality options").
    "denoise": False,
}
_PLAN_FIELDS = ("hop", "lookahead", "crossfade")
WINDOW_FIELDS = ("postfilter", "high_band_voice_removal", "denoise")


@dataclasses.dataclass(frozen=True)
class Settings:
    """hop, lookahead, crossfade: seconds (see :mod:`stream_sep.engine.plan`); stereo: 'batch'
    (every channel through the model) or 'mid' (the mid channel only, half the compute);
    latency: 'auto', a number of seconds, or None (use the plan options as given);
    postfilter: 'none', 'wiener' or 'wiener-em' (:mod:`stream_sep.dsp.postfilter`);
    high_band_voice_removal: 0..1, the share of the voice above the model's band removed in
    karaoke (:mod:`stream_sep.engine.highband`); denoise: separate every window as it is
    and sign-inverted and average the two (:func:`stream_sep.models.families.separate_rows`)."""

    hop: float | None = None
    lookahead: float | None = None
    crossfade: float | None = None
    stereo: str | None = None
    latency: float | str | None = None
    postfilter: str | None = None
    high_band_voice_removal: float | None = None
    denoise: bool | None = None

    def __post_init__(self):
        _check_seconds("hop", self.hop, 0.0, strict=True)
        _check_seconds("lookahead", self.lookahead, 0.0)
        _check_seconds("crossfade", self.crossfade, MIN_CROSSFADE_SECONDS)
        if self.stereo is not None and self.stereo not in STEREO_CHOICES:
            choices = ", ".join(STEREO_CHOICES)
            raise UserError(f"--stereo must be one of {choices}, got {self.stereo!r}")
        if self.postfilter is not None and check_postfilter(self.postfilter) != "none":
            load_norbert()  # a missing package is one line before any model loads
        if self.high_band_voice_removal is not None:
            check_removal(self.high_band_voice_removal)
        if self.denoise is not None:
            check_denoise(self.denoise)
        if self.latency not in (None, "auto"):
            _check_seconds("latency", self.latency, 0.0, strict=True, auto=True)
            if self.plan_given:
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
        return {
            name: DEFAULTS[name] if getattr(self, name) is None else getattr(self, name)
            for name in (*_PLAN_FIELDS, "stereo", *WINDOW_FIELDS)
        }

    def window_options(self) -> dict:
        """postfilter, high_band_voice_removal and denoise, defaults filled in: what a fitted live
        plan adds to :meth:`~stream_sep.engine.fitting.Fit.engine_options` (and what
        :func:`~stream_sep.engine.fitting.measure` must time)."""
        return {
            name: DEFAULTS[name] if getattr(self, name) is None else getattr(self, name)
            for name in WINDOW_FIELDS
        }


def add_arguments(parser: argparse.ArgumentParser, live: bool = False) -> None:
    """The engine options of a command; ``live`` adds ``--latency`` (default auto)."""
    if live:
        parser.add_argument(
            "--latency",
            default="auto",
            type=_latency,
            metavar="auto|SECONDS",
            help="auto (default): time the model here at start-up and take the lowest latency "
            f"whose load (the 90th percentile time per window / the hop) stays at or below "
            f"{fitting.LOAD_CEILING:g} ({fitting.LOAD_CEILING * 100:g}%%); SECONDS: exactly "
            "that latency, or one line saying the lowest possible",
        )
    for name, text in (
        ("hop", "time between windows"),
        ("lookahead", "future context after the last sample emitted"),
        ("crossfade", "blend between windows"),
    ):
        minimum = MIN_CROSSFADE_SECONDS if name == "crossfade" else 0.0
        parser.add_argument(
            f"--{name}",
            type=options.seconds(name, minimum, inclusive=name != "hop"),
            default=None,
            metavar="SECONDS",
            help=f"{text} ({_live_plan_help(name) if live else f'default {DEFAULTS[name]:g}'})",
        )
    parser.add_argument(
        "--stereo",
        type=options.choice("stereo", STEREO_CHOICES),
        metavar=options.listing(STEREO_CHOICES),
        default=None,
        help="batch: both channels through the model; mid: the mid channel only, half the "
        "compute (default batch" + ("; --latency auto may choose mid)" if live else ")"),
    )


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
        f"defaults (this one {DEFAULTS[name]:g}); refused with --latency SECONDS"
    )


def add_quality_arguments(parser: argparse.ArgumentParser) -> None:
    """--postfilter, --high-band-voice-removal and --denoise (the per-window quality
    options)."""
    parser.add_argument(
        "--postfilter",
        type=options.choice("postfilter", POSTFILTERS),
        metavar=options.listing(POSTFILTERS),
        default=None,
        help="re-filter each window's estimate with norbert's Wiener filter (the model's "
        "vocals and the mixture minus them as the two sources); wiener-em adds an EM "
        "iteration; none: the model's estimate as it is (default wiener)",
    )
    parser.add_argument(
        "--high-band-voice-removal",
        type=options.number("high-band-voice-removal", 0.0, 1.0),
        default=None,
        metavar="FRACTION",
        help="0..1: at stream rates above the model's, also remove this share of the input "
        "above the model's band where the model hears voice at the top of its band "
        "(sibilants a 16 kHz model cannot see; default 0)",
    )
    parser.add_argument(
        "--denoise",
        action="store_true",
        default=None,
        help="separate every window twice, as it is and sign-inverted, and average the two "
        "estimates: what the network adds whatever the input's sign cancels (Ultimate "
        "Vocal Remover's Denoise Output); twice the model's compute (default off)",
    )


def from_args(args: argparse.Namespace) -> Settings:
    return Settings(
        hop=args.hop,
        lookahead=args.lookahead,
        crossfade=args.crossfade,
        stereo=args.stereo,
        latency=getattr(args, "latency", None),
        postfilter=getattr(args, "postfilter", None),
        high_band_voice_removal=getattr(args, "high_band_voice_removal", None),
        denoise=getattr(args, "denoise", None),
    )


def _latency(text: str) -> float | str:
    if text.strip() == "auto":
        return "auto"
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not math.isfinite(value) or value <= 0:
        raise UserError(f"--latency must be auto or a number of seconds > 0, got {text}")
    return value


def _check_seconds(name, value, minimum, strict=False, auto=False) -> None:
    if value is None:
        return
    number = isinstance(value, (int, float)) and not isinstance(value, bool)
    if not number or not math.isfinite(value) or value < minimum or (strict and value == minimum):
        allowed = f"a number of seconds {'>' if strict else '>='} {minimum:g}"
        raise UserError(f"--{name} must be {'auto or ' if auto else ''}{allowed}, got {value!r}")
