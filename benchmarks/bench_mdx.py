"""Speed of MDX-Net-sized models (UVR's community models) through the host's ``mdx`` family:
per-window time on this machine and the lowest live latency it allows.

    python -m benchmarks bench_mdx                      # both shapes, provider auto
    python -m benchmarks bench_mdx --provider cpu --repeats 3 --out benchmarks/results
    python -m benchmarks bench_mdx --smoke --out /tmp/b # a tiny network, seconds (tests)

The networks are :mod:`mdx_models` (KUIELab's Conv_TDF_net_trim, batch norm folded) with
random weights at UVR's sizes: input 4 x 3072 x 256 with g = 48 (a 66.7 MB file, n_fft
7680) and 4 x 2048 x 256 with g = 32 (29.7 MB, n_fft 6144). One window is 261,120 samples
(5.92 s at 44.1 kHz); a stereo window is one network item (the channels are inside it).

Columns: host = :meth:`MdxModel.separate_channels` of one stereo window (STFT, network,
iSTFT), median of ``--repeats`` after one warm-up run; network = the ONNX graph alone;
RTF = host / 5.92 s; lowest latency = what ``--latency auto`` would choose at 48 kHz stereo
(:func:`stream_sep.engine.fitting.choose` on the measured times), or why none fits.
Writes a table to stdout, ``mdx.json`` and ``mdx.md`` under ``--out``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

import numpy as np
import onnx

from benchmarks import mdx_models
from benchmarks.harness import RESULTS, Run, in_folder, timed
from stream_sep.engine import fitting
from stream_sep.errors import UserError
from stream_sep.models import providers
from stream_sep.models.families.mdx import MdxContract
from stream_sep.models.loading import load_model

STREAM_RATE = 48000
# name -> (network shape, n_fft)
MODELS = {
    "mdx-3072x256": (mdx_models.NetShape(dim_f=3072, dim_t=256, growth=48), 7680),
    "mdx-2048x256": (mdx_models.NetShape(dim_f=2048, dim_t=256, growth=32), 6144),
}
SMOKE = {"mdx-smoke": (mdx_models.NetShape(dim_f=256, dim_t=32, levels=2, growth=8), 2048)}


def model_file(folder: Path, name: str, shape: mdx_models.NetShape, n_fft: int) -> Path:
    """The random-weight network with our contract in its metadata (built once, cached)."""
    path = folder / f"{name}.onnx"
    if path.is_file():
        return path
    raw = mdx_models.build(folder / f"{name}.raw.onnx", shape)
    proto = onnx.load(raw)
    contract = MdxContract(n_fft=n_fft, dim_f=shape.dim_f, dim_t=shape.dim_t)
    for key, value in contract.to_metadata().items():
        proto.metadata_props.add(key=key, value=value)
    onnx.save(proto, path)
    raw.unlink()
    return path


def measure(path: Path, provider: str, repeats: int) -> dict:
    model = load_model(path, provider)
    contract = model.contract
    rng = np.random.default_rng(0)
    stereo = (0.1 * rng.standard_normal((2, contract.window_samples))).astype(np.float32)
    model.separate_channels(stereo, 2)  # warm-up
    host, network = [], []
    for _ in range(repeats):
        host.append(timed(lambda: model.separate_channels(stereo, 2)))
        network.append(model.last_network_seconds)
    # A stereo window and the mid channel cost the same here: both are one network item.
    speed = fitting.SpeedProfile(batch=tuple(host), mid=tuple(host))
    try:
        fit = fitting.choose(contract, STREAM_RATE, 2, speed)
        live = {"latency_s": round(fit.latency, 3), "hop_s": fit.hop, "load": round(fit.load, 3)}
    except UserError:
        needed = speed.t90("batch") / fitting.LOAD_CEILING
        live = {
            "latency_s": None,
            "why": f"a {speed.t90('batch'):.2f} s window needs a hop of at least {needed:.2f} s "
            f"(load {fitting.LOAD_CEILING:g}), which the {contract.window_seconds:.2f} s window "
            "cannot give",
        }
    return {
        "provider": model.provider,
        "window_s": round(contract.window_seconds, 3),
        "host_s": round(statistics.median(host), 3),
        "host_max_s": round(max(host), 3),
        "network_s": round(statistics.median(network), 3),
        "rtf": round(statistics.median(host) / contract.window_seconds, 3),
        **live,
    }


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--provider", default="auto", choices=providers.CHOICES)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--workdir", type=Path, default=Path.home() / ".cache/stream-sep/bench")
    parser.add_argument("--smoke", action="store_true", help="a tiny network (seconds)")
    args = parser.parse_args(argv)
    run = Run("bench_mdx", argv)
    args.workdir.mkdir(parents=True, exist_ok=True)
    rows = []
    for name, (shape, n_fft) in (SMOKE if args.smoke else MODELS).items():
        path = model_file(args.workdir, name, shape, n_fft)
        row = {
            "model": name,
            "input": f"4 x {shape.dim_f} x {shape.dim_t}",
            "n_fft": n_fft,
            "gflop_per_window": round(shape.flops() / 1e9, 1),
            "file_mb": round(path.stat().st_size / 1e6, 1),
            **measure(path, args.provider, args.repeats),
        }
        rows.append(row)
        print(json.dumps(row), flush=True)
    run.write(*in_folder(args.out, "mdx"), {"rows": rows}, markdown(rows))
    return 0


def markdown(rows: list[dict]) -> list[str]:
    """The report's body: one row per network."""
    lines = [
        "MDX-Net-sized models, one stereo window.",
        "",
        "| model | input | GFLOP | file | provider | host s | network s | RTF | lowest live latency |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        live = f"{r['latency_s']:.2f} s (hop {r['hop_s']:.2f} s)" if r["latency_s"] else r["why"]
        lines.append(
            f"| {r['model']} | {r['input']} | {r['gflop_per_window']} | {r['file_mb']} MB | "
            f"{r['provider']} | {r['host_s']} | {r['network_s']} | {r['rtf']} | {live} |"
        )
    return lines


if __name__ == "__main__":
    sys.exit(main())
