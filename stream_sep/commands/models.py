"""``stream-sep models``: the model shelf (argument parsing and printing only).

    stream-sep models list
    stream-sep models import FILE.onnx [--name NAME] [--model-data model_data.json]
                             [--n-fft N --dim-f F --dim-t T --compensate C --stem STEM]
    stream-sep models remove NAME
    stream-sep models measure NAME [--samplerate R --channels C --provider P]

Models on the shelf are used by name: ``stream-sep --model NAME``, ``stream-sep separate
--model NAME``, ``stream_sep.load_model(NAME)``.
"""

from __future__ import annotations

import argparse

from stream_sep.engine import fitting
from stream_sep.errors import UserError
from stream_sep.models import model_import, providers, shelf
from stream_sep.models.loading import load_model


def add_arguments(parser) -> None:
    actions = parser.add_subparsers(dest="action", metavar="ACTION")
    actions.required = True
    listing = "the models on the shelf (the bundled one included)"
    actions.add_parser(
        "list",
        help=listing,
        description=(
            f"List {listing}: name, family, sample rate, window, frequency band, stem, file "
            "size, the lowest live latency 'models measure' found (or 'not measured') and "
            "where the model came from; a file on the shelf that does not load is listed "
            f"with its problem. The shelf folder is printed first; set {shelf.ENV_VAR} to "
            "use another."
        ),
    )

    importing = actions.add_parser(
        "import",
        help="check a community MDX-Net ONNX model and put a copy on the shelf",
        description=(
            "Check an MDX-Net ONNX model (Ultimate Vocal Remover, python-audio-separator), "
            "identify it by the MD5 of its last 10,240,000 bytes in UVR's model-data table "
            "or take its parameters from the flags, and store a copy carrying them on the "
            "shelf. Your file is never modified."
        ),
    )
    importing.add_argument("file", metavar="FILE.onnx", help="the model file")
    importing.add_argument("--name", help="the shelf name (default: the file name's stem)")
    importing.add_argument(
        "--model-data",
        metavar="TABLE.json",
        help="UVR's model_data.json (or python-audio-separator's mdx_model_data.json)",
    )
    importing.add_argument("--n-fft", type=int, help="STFT size, e.g. 7680 or 6144")
    importing.add_argument("--dim-f", type=int, help="frequency bins the network sees (checked)")
    importing.add_argument("--dim-t", type=int, help="frames per window, e.g. 256 (checked)")
    importing.add_argument(
        "--compensate", type=float, help="UVR's gain for the model's stem (default 1.0)"
    )
    importing.add_argument(
        "--stem", help="what the network estimates: vocals or instrumental (UVR's primary stem)"
    )
    importing.add_argument(
        "--replace", action="store_true", help="replace a shelf model of the same name"
    )

    removing = actions.add_parser(
        "remove",
        help="remove a model from the shelf",
        description=(
            "Delete shelf model NAME (its file in the shelf folder and its measured "
            f"latency). The bundled model ({shelf.BUNDLED_NAME}) cannot be removed; an "
            "unknown NAME is refused with the shelf's names."
        ),
    )
    removing.add_argument("name", metavar="NAME")

    measuring = actions.add_parser(
        "measure",
        help="measure a model's speed here and remember the lowest live latency it allows",
        description=(
            f"Load shelf model NAME, time {fitting.TIMED_WINDOWS} windows of quiet noise "
            "through the live window path (both channels together, and the mid channel "
            "alone), and choose the lowest live latency whose load (the 90th percentile "
            f"time per window / the hop) stays at or below {fitting.LOAD_CEILING:g}, as "
            "'--latency auto' does. The result is printed and remembered on the shelf "
            "('models list' shows it). Exit status 1 if no live setting fits."
        ),
    )
    measuring.add_argument("name", metavar="NAME")
    measuring.add_argument("--samplerate", type=int, default=48000, help="default 48000")
    measuring.add_argument("--channels", type=int, default=2, choices=(1, 2), help="default 2")
    measuring.add_argument(
        "--provider", default="auto", metavar="|".join(providers.CHOICES), help="default auto"
    )


def run(args: argparse.Namespace) -> int:
    return {"list": _list, "import": _import, "remove": _remove, "measure": _measure}[args.action](
        args
    )


def _list(args) -> int:
    rows = [("NAME", "FAMILY", "RATE", "WINDOW", "BAND", "STEM", "SIZE", "LATENCY", "FROM")]
    for entry in shelf.entries():
        if entry.problem:
            rows.append(
                (entry.name, "?", "", "", "", "", _size(entry.size_bytes), "", entry.problem)
            )
            continue
        low, high = entry.band_hz
        rows.append(
            (
                entry.name,
                entry.family,
                f"{entry.sample_rate} Hz",
                f"{entry.window_seconds:.2f} s",
                f"{low:.0f} Hz-{high / 1000:.1f} kHz",
                entry.stem,
                _size(entry.size_bytes),
                entry.latency or "not measured",
                entry.origin,
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]) - 1)]
    print(f"shelf: {shelf.shelf_dir()} (set {shelf.ENV_VAR} to use another folder)")
    for row in rows:
        print(
            "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=False))
            + "  "
            + row[-1]
        )
    return 0


def _import(args) -> int:
    flags = model_import.Parameters(
        n_fft=args.n_fft,
        dim_f=args.dim_f,
        dim_t=args.dim_t,
        compensate=args.compensate,
        stem=model_import.stem_name(args.stem) if args.stem is not None else None,
    )
    done = model_import.import_model(args.file, args.name, flags, args.model_data, args.replace)
    contract = done.contract
    low, high = contract.band_hz
    print(
        f"imported {args.file} as {done.name!r}: mdx, {contract.stem} model, n_fft "
        f"{contract.n_fft}, dim_f {contract.dim_f} ({low:.0f} Hz-{high / 1000:.1f} kHz), "
        f"dim_t {contract.dim_t} ({contract.window_seconds:.2f} s windows), compensate "
        f"{contract.compensate:g}; parameters from the {done.parameters_from}; MD5 {done.md5}"
    )
    print(f"stored at {done.path}; run it with: stream-sep --model {done.name}")
    return 0


def _remove(args) -> int:
    path = shelf.remove(args.name)
    print(f"removed {args.name!r} ({path})")
    return 0


def _measure(args) -> int:
    if shelf.resolve(args.name) is None:
        raise UserError(
            f"no model named {args.name!r} on the shelf; on the shelf: {', '.join(shelf.names())}"
        )
    model = load_model(args.name, args.provider)
    model.warm_up(batch=args.channels)
    speed = fitting.measure(model, args.samplerate, args.channels)
    setting = f"{args.samplerate} Hz, {args.channels} ch, {model.provider}"
    try:
        fit = fitting.choose(model.contract, args.samplerate, args.channels, speed)
    except UserError as error:
        print(f"{args.name}: {speed.t90('batch'):.3f} s per window ({setting}): {error}")
        return 1
    shelf.record_latency(args.name, fit.latency, setting)
    print(
        f"{args.name}: {fit.window_seconds:.3f} s per window ({fit.stereo}, {setting}); lowest "
        f"live latency {fit.latency:.3f} s (hop {fit.hop:.2f} s, load {fit.load:.2f})"
    )
    return 0


def _size(count: int) -> str:
    return f"{count / 1e6:.1f} MB"
