"""Export a trained checkpoint to ONNX for the stream-sep host: ``python export/to_onnx.py``.

Run from the repository root; ``--help`` lists the options. This is the command line (options
and printing); the stages are the modules of :mod:`export`, which tests call in-process.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

from export.checkpoint import DEFAULT_RUNS_ROOT, default_output, resolve_checkpoint
from export.convert import DEFAULT_OPSET, OPSET_RANGE
from export.errors import ExportFailed
from export.pipeline import ExportReport, export_checkpoint
from stream_sep.cli_runner import OneLineParser, run_main
from stream_sep.errors import UserError

log = logging.getLogger(__name__)

PROG = "to_onnx.py"
PRECISION_WORDS = {
    "float32": "float32 weights",
    "float16": "float16 weights and arithmetic",
    "float16-weights": "float16 weights, float32 arithmetic",
}


def get_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(
        prog=PROG,
        description=(
            "Export a trained checkpoint's core network to ONNX for the stream-sep host, "
            "then load the file with ONNX Runtime and check it against Keras. Without "
            "arguments it takes the newest run under ./runs, its best checkpoint, and writes "
            "the .onnx next to it (best.onnx; best.fp16.onnx with --fp16, best.fp16w.onnx "
            "with --fp16-weights). Run it from the repository root."
        ),
    )
    parser.add_argument(
        "--checkpoint",
        metavar="PATH",
        help="a .keras checkpoint (default: the best checkpoint of the newest run in --runs-root)",
    )
    parser.add_argument(
        "--output",
        metavar="PATH",
        help="the .onnx file to write (default: next to the checkpoint, same name, .onnx)",
    )
    parser.add_argument(
        "--runs-root",
        metavar="DIR",
        type=Path,
        default=DEFAULT_RUNS_ROOT,
        help="where training runs live, for the default checkpoint (default: ./runs)",
    )
    parser.add_argument(
        "--opset",
        type=int,
        default=DEFAULT_OPSET,
        help=f"ONNX opset, {OPSET_RANGE[0]}..{OPSET_RANGE[1]} (default: {DEFAULT_OPSET})",
    )
    precision = parser.add_mutually_exclusive_group()
    precision.add_argument(
        "--fp16",
        dest="precision",
        action="store_const",
        const="float16",
        default="float32",
        help="float16 weights and arithmetic (float32 inputs and outputs), for GPUs",
    )
    precision.add_argument(
        "--fp16-weights",
        dest="precision",
        action="store_const",
        const="float16-weights",
        help="float16 weights, float32 arithmetic: half the file at the float32 speed",
    )
    parser.add_argument(
        "--window-samples",
        type=int,
        metavar="N",
        help="export the same weights on another window of N samples at the model's rate "
        "(e.g. 32256, 2.016 s at 16 kHz: half the work per window for live use); default: "
        "the window it was trained on",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log more detail")
    return parser


def run(args: argparse.Namespace) -> ExportReport:
    if not OPSET_RANGE[0] <= args.opset <= OPSET_RANGE[1]:
        raise UserError(f"--opset must be in {OPSET_RANGE[0]}..{OPSET_RANGE[1]}, got {args.opset}")
    checkpoint = resolve_checkpoint(args.checkpoint, args.runs_root)
    output = Path(args.output) if args.output else default_output(checkpoint, args.precision)
    if output.resolve() == checkpoint.resolve():
        raise UserError(f"--output {str(output)!r} is the checkpoint itself")
    print(
        f"exporting {checkpoint} -> {output} (opset {args.opset}, "
        f"{PRECISION_WORDS[args.precision]})"
    )
    report = export_checkpoint(checkpoint, output, args.opset, args.precision, args.window_samples)
    print(f"parity: {report.parity.describe()}")
    print(f"wrote {report.path}: {report.size_bytes / 1e6:.1f} MB in {report.seconds:.1f} s")
    return report


def main(argv: list[str] | None = None) -> int:
    """The command line; returns the exit status (2 for user errors, 1 for failed exports)."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    return run_main(PROG, lambda: parse_and_run(argv))


def parse_and_run(argv: list[str] | None) -> int:
    args = get_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.WARNING,
        format=f"{PROG}: %(message)s",
    )
    try:
        run(args)
    except ExportFailed as error:
        log.debug("export failed", exc_info=error)
        print(f"{PROG}: export failed: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
