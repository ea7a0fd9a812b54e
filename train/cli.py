"""``python -m train``: fit TFC_TDF_Net on MUSDB18, MUSDB18-HQ or MIR-1K.

Examples::

    python -m train --data ~/musdb18_wav --format musdb --preset tiny --epochs 10
    python -m train --download ~/datasets --format musdb --preset full      # the seed
    python -m train --preset full --summary
    python -m train --resume --run-name my-run --epochs 50
    python -m train --data DIR --format mir1k --init-from stream_sep/models/vocals-mir1k.onnx

Defaults are the seed's recipe (batch 3, Adam 5e-5, gradient accumulation 2, 2000 batches
per epoch). On resume the run's saved settings are used; options given again override them
(the model's shape cannot change).
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import logging
import math
import sys
from pathlib import Path

from stream_sep.cli_runner import OneLineParser, run_main
from stream_sep.errors import UserError
from train.quiet import quiet_tensorflow

log = logging.getLogger(__name__)

PROG = "python -m train"
MODEL_OPTIONS = ("channels", "growth", "n_scales", "block_size", "window_samples", "sources")


def get_parser() -> argparse.ArgumentParser:
    # Options default to SUPPRESS so a resumed run can tell given options from defaults.
    parser = OneLineParser(
        prog=PROG,
        description=__doc__.split("\n")[0],
        argument_default=argparse.SUPPRESS,
        dash_values=("--vocal-pitch-shift",),
    )
    data = parser.add_argument_group("data")
    data.add_argument("--data", type=str, help="dataset root directory")
    data.add_argument("--format", choices=("musdb", "musdb-hq", "mir1k"), help="dataset layout")
    data.add_argument(
        "--download",
        type=Path,
        metavar="DIR",
        help="download MUSDB18 from Zenodo into DIR and convert it to 16 kHz wav (the seed's step); "
        "implies --format musdb",
    )
    data.add_argument("--val-singers", type=_names, help="MIR-1K: comma-separated singers held out")
    data.add_argument(
        "--val-split", type=float, help="MIR-1K: share of singers held out (default 0.15)"
    )
    data.add_argument("--val-examples", type=int, help="fixed validation chunks (default 64)")
    data.add_argument(
        "--original-pairs-fraction",
        type=float,
        help="share of examples that are a track's own aligned stems instead of random mixes (default 0)",
    )
    data.add_argument(
        "--augmentation",
        choices=("none", "seed", "produced"),
        help="augmentation recipe (default seed: the seed's; produced: reverb, EQ, pitch, "
        "compression and vocal level on the vocals; see docs/training.md)",
    )
    data.add_argument(
        "--vocal-pitch-shift",
        type=_numbers,
        metavar="LOW,HIGH,P",
        help="pitch shift of the vocals chunks, in semitones, with probability P, instead of "
        "the recipe's own (seed: -5,5,0.1; produced: -2,2,0.3); e.g. --vocal-pitch-shift -7,2,0.5 "
        "for more low voices",
    )
    data.add_argument(
        "--no-augmentation",
        dest="augmentation",
        action="store_const",
        const="none",
        help="the same as --augmentation none",
    )
    data.add_argument(
        "--fullband-share",
        type=float,
        metavar="P",
        help="share of training examples whose accompaniment is a rendered full-band song "
        "(General MIDI through FluidSynth) with the data's vocals placed in it; default 0 "
        "(see docs/training.md)",
    )
    data.add_argument(
        "--fullband-songs",
        type=int,
        metavar="N",
        help="rendered full-band songs (20-40 s each), rendered once before training (default 100)",
    )
    data.add_argument(
        "--fullband-cache",
        type=str,
        metavar="DIR",
        help="folder of the rendered songs, shared between runs (default: the run directory)",
    )
    data.add_argument("--fullband-seed", type=int, help="seed of the rendered songs (default 0)")
    data.add_argument(
        "--multitrack",
        type=str,
        metavar="DIR",
        help="real multitrack songs to train on: one folder per song holding vocals and "
        "accompaniment (or drums, bass, other) files, the layout of 'stream-sep evaluate "
        "--format stems'; read into memory at the start",
    )
    data.add_argument(
        "--multitrack-songs",
        type=_names,
        metavar="NAMES",
        help="comma-separated song folders of --multitrack to use (default all); the others "
        "stay held out",
    )
    data.add_argument(
        "--multitrack-share",
        type=float,
        metavar="P",
        help="share of training examples made from the --multitrack songs' stems (default 0)",
    )
    data.add_argument(
        "--workers", type=int, help="data-loading threads (default 0: in the training loop)"
    )

    model = parser.add_argument_group("model")
    model.add_argument(
        "--preset", choices=("full", "small", "tiny"), help="default full (the seed)"
    )
    model.add_argument("--channels", type=int)
    model.add_argument("--growth", type=int)
    model.add_argument("--n-scales", type=int)
    model.add_argument("--block-size", type=int)
    model.add_argument("--window-samples", type=int, help="chunk length (default 65024)")
    model.add_argument("--sources", type=_names, help="target stems (default vocals)")
    model.add_argument(
        "--seed-init",
        action="store_true",
        help="the seed's random init of the output convolution instead of zeros",
    )
    model.add_argument("--summary", action="store_true", help="print the model summary and exit")
    model.add_argument(
        "--init-from",
        metavar="MODEL.onnx",
        help="start from the weights of a model exported by export/to_onnx.py (e.g. the bundled "
        "one); its configuration is used unless model options are given, which must match it",
    )

    fit = parser.add_argument_group("training")
    fit.add_argument("--epochs", type=int, help="default 10")
    fit.add_argument("--steps-per-epoch", type=int, help="batches per epoch (default 2000)")
    fit.add_argument("--batch-size", type=int, help="per replica (default 3)")
    fit.add_argument(
        "--accumulation-steps", type=int, help="gradient accumulation (default 2, 0 = off)"
    )
    fit.add_argument("--lr", type=float, help="peak learning rate (default 5e-5)")
    fit.add_argument("--warmup-steps", type=int, help="linear warm-up steps (default 0)")
    fit.add_argument(
        "--lr-half-life", type=int, help="exponential decay half-life in steps (default 0 = off)"
    )
    fit.add_argument("--lr-decay-start", type=int, help="step where the final linear decay starts")
    fit.add_argument(
        "--lr-decay-steps", type=int, help="length of the final linear decay (default 0 = off)"
    )
    fit.add_argument(
        "--lr-final-factor", type=float, help="learning rate factor after the linear decay (0.1)"
    )
    fit.add_argument("--seed", type=int, help="random seed (default 21, the seed's)")
    fit.add_argument(
        "--distribute",
        action="store_true",
        help="data-parallel over all local GPUs (MirroredStrategy / keras.distribution.DataParallel)",
    )
    fit.add_argument(
        "--log-every", type=int, help="log the loss and s/step every N steps (default 0 = off)"
    )
    fit.add_argument(
        "--progress", choices=("bar", "epoch", "none"), help="progress output (default bar)"
    )

    run = parser.add_argument_group("run directory")
    run.add_argument("--runs-dir", type=Path, help="where runs live (default ./runs)")
    run.add_argument("--run-name", type=str, help="default <preset>-<format>-<date-time>")
    run.add_argument("--resume", action="store_true", help="continue the named (or newest) run")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    return parser


def _names(text: str) -> list[str]:
    names = [n.strip() for n in text.split(",") if n.strip()]
    if not names:
        raise argparse.ArgumentTypeError(f"expected comma-separated names, got {text!r}")
    return names


def _numbers(text: str) -> list[float]:
    try:
        return [float(part) for part in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated numbers, got {text!r}"
        ) from None


def main(argv: list[str] | None = None) -> int:
    """The command line; returns the exit status (2 for user errors, 130 for Ctrl-C)."""
    return run_main(
        PROG, lambda: parse_and_run(argv), interrupted="interrupted; resume with --resume"
    )


def parse_and_run(argv: list[str] | None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    args = get_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if getattr(args, "verbose", False) else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    return run(args, command=[*PROG.split(), *argv])


def run(args: argparse.Namespace, command: list[str] | None = None) -> int:
    """Check what can be checked without Keras, then import it (TensorFlow takes seconds)
    and train."""
    given = vars(args)
    from train.config import preset_config

    if given.get("summary"):
        return print_summary(preset_config(given.get("preset", "full"), **model_overrides(given)))

    from train import runs
    from train.config import ModelConfig

    runs_root = given.get("runs_dir", runs.DEFAULT_RUNS_ROOT)
    if given.get("resume"):
        if "init_from" in given:
            raise UserError(
                "--init-from starts a new run; a resumed run continues from its own "
                "last.keras: drop --init-from"
            )
        run_dir = (
            runs_root / given["run_name"] if "run_name" in given else runs.newest_run(runs_root)
        )
        saved = runs.read_run_config(run_dir)
        changed = sorted(k for k in ("preset", "seed_init", *MODEL_OPTIONS) if k in given)
        if changed:
            raise UserError(
                f"a resumed run keeps its model; drop {', '.join('--' + k.replace('_', '-') for k in changed)}"
            )
    elif "data" not in given and "download" not in given:
        raise UserError("--data DIR is required (or --download DIR for MUSDB18, or --summary)")

    quiet_tensorflow()
    from train.fit import TrainSettings, train

    if given.get("resume"):
        config = ModelConfig.from_dict(saved["model"])
        settings = TrainSettings(**{**saved["training"], **settings_overrides(given)})
    else:
        if "download" in given:
            from train.musdb import download_musdb18

            given["data"] = str(download_musdb18(given["download"]))
            given.setdefault("format", "musdb")
        preset = given.get("preset", "full")
        config = preset_config(preset, **model_overrides(given))
        if "init_from" in given:
            config, preset = warm_start_config(given, config)
        settings = TrainSettings(**settings_overrides(given))
        name = given.get("run_name") or default_run_name(preset, settings.format)
        run_dir = runs_root / name
    train(Path(run_dir), config, settings, resume=bool(given.get("resume")), command=command)
    log.info("run directory: %s", run_dir)
    return 0


def warm_start_config(given: dict, config):
    """The model configuration and preset name of a run started ``--init-from`` a model:
    the model's own, or the given one when model options are given (it must match).
    ``--window-samples`` alone keeps the model's network and runs it on that window."""
    from train.config import PRESETS
    from train.warm_start import check_same_architecture, onnx_model_config, read_onnx

    path = given["init_from"]
    found = onnx_model_config(read_onnx(path), path)
    if "window_samples" in given:  # the same weights on another window
        found = dataclasses.replace(found, window_samples=given["window_samples"])
        found.validate()
    structure = [k for k in MODEL_OPTIONS if k != "window_samples"]
    if any(k in given for k in ("preset", "seed_init", *structure)):
        check_same_architecture(config, found, path)
        return config, given.get("preset", "full")
    full = PRESETS["full"]
    shape = dataclasses.replace(found, sources=full.sources, window_samples=full.window_samples)
    preset = next((name for name, c in PRESETS.items() if c == shape), "custom")
    return found, preset


def model_overrides(given: dict) -> dict:
    overrides = {k: given[k] for k in MODEL_OPTIONS if k in given}
    if given.get("seed_init"):
        overrides["zero_init_output"] = False
    return overrides


def settings_overrides(given: dict) -> dict:
    from train.fit import TrainSettings

    fields = {f.name for f in dataclasses.fields(TrainSettings)}
    return {k: v for k, v in given.items() if k in fields}


def default_run_name(preset: str, fmt: str) -> str:
    return f"{preset}-{fmt}-{datetime.datetime.now():%Y%m%d-%H%M%S}"


def print_summary(config) -> int:
    """Print the training model (core network expanded) and its trainable parameter count."""
    quiet_tensorflow()
    from train.model import build_training_model, core_network_of

    model = build_training_model(config)
    model.summary(expand_nested=False)
    core_network_of(model).summary()
    trainable = sum(math.prod(w.shape) for w in model.trainable_weights)
    print(f"Trainable parameters: {trainable:,}")
    return 0
