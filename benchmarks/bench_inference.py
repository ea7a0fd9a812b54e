"""Inference benchmark: one window through the host (STFT -> ONNX core -> iSTFT) per preset,
execution provider, precision and batch, beside the same window through Keras/TensorFlow.

    python -m benchmarks bench_inference                 # tiny, small, full; batch 1 and 2
    python -m benchmarks bench_inference --smoke --out /tmp/bench   # CI: tiny, seconds

The models are the real presets of ``train/`` with random weights (seeded), exported by
``export/`` exactly as a trained checkpoint would be; the .onnx files are cached under
``~/.cache/stream-sep/bench/`` (never in the repository), keyed by the source of the model
and export code. Keras runs the very same weights in graph mode (``tf.function``), in the
same process, runs alternating with the host's, so the ratio of the two times is the
speed-up a user gets from the host.

Columns (times per window of 4.064 s; medians over ``--repeats`` runs after a warm-up):
host = STFT + model + iSTFT through :meth:`SeparationModel.separate`; model = the ONNX
graph alone; RTF = host time / window duration; load = host time / hop (what the live
engine spends of each hop; above 100% it cannot keep up); GFLOP/s = the graph's
multiply-adds (Conv, ConvTranspose, MatMul, Gemm; 2 FLOPs each) / model time, against the
device's nominal peak. Writes a table to stdout, ``inference.json`` and ``inference.md``.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import statistics
import subprocess
import sys
from pathlib import Path

import numpy as np

from benchmarks import harness
from benchmarks.fixtures import SEED, build_core, cached_export, export_path
from stream_sep.models import providers
from stream_sep.models.bundled import bundled_model_path
from stream_sep.models.loading import load_model

PRESETS = ("tiny", "small", "full")
PRECISIONS = ("fp32", "fp16")
HOPS = (1.0, 0.5, 0.25)  # 0.5 s is the engine's default hop


@dataclasses.dataclass
class Row:
    preset: str
    precision: str
    provider: str
    batch: int
    params_m: float
    gflop: float  # per window (this batch)
    host_median_ms: float
    host_max_ms: float
    model_median_ms: float
    model_max_ms: float
    rtf: float
    load: dict[str, float]  # hop seconds (as text) -> fraction
    gflops_per_s: float
    peak_gflops: float | None
    keras_host_ms: float | None = None
    keras_model_ms: float | None = None

    @property
    def speedup(self) -> float | None:
        return self.keras_host_ms / self.host_median_ms if self.keras_host_ms else None


# ------------------------------------------------------------------------ counting


def count_flops(path: Path, batch: int) -> tuple[float, int]:
    """(FLOPs of one run at ``batch``, parameter count) from the graph's Conv, ConvTranspose,
    MatMul and Gemm nodes; 2 FLOPs per multiply-add. Normalisation and activations are left
    out (a few percent of the total for this network)."""
    import onnx
    from onnx import shape_inference

    model = onnx.load(path)
    for tensor in list(model.graph.input) + list(model.graph.output):
        dim = tensor.type.tensor_type.shape.dim[0]
        if dim.dim_param:
            dim.dim_value = batch
    model = shape_inference.infer_shapes(model, data_prop=True)
    shapes = {}
    for info in list(model.graph.value_info) + list(model.graph.input) + list(model.graph.output):
        shapes[info.name] = [d.dim_value for d in info.type.tensor_type.shape.dim]
    for init in model.graph.initializer:
        shapes[init.name] = list(init.dims)
    params = sum(int(np.prod(init.dims)) for init in model.graph.initializer)
    flops = 0.0
    for node in model.graph.node:
        flops += _node_flops(node, shapes)
    return flops, params


def _node_flops(node, shapes: dict[str, list[int]]) -> float:
    def shape(name):
        return shapes.get(name) or []

    if node.op_type in ("Conv", "ConvTranspose"):
        weight, out = shape(node.input[1]), shape(node.output[0])
        if not weight or not out:
            return 0.0
        if node.op_type == "Conv":
            # weight (Cout, Cin/g, kh, kw): every output element is a Cin/g*kh*kw dot product
            return 2.0 * np.prod(out) * np.prod(weight[1:])
        inp = shape(node.input[0])  # ConvTranspose weight (Cin, Cout/g, kh, kw)
        return 2.0 * np.prod(inp) * np.prod(weight[1:]) if inp else 0.0
    if node.op_type in ("MatMul", "Gemm"):
        a, out = shape(node.input[0]), shape(node.output[0])
        if not a or not out:
            return 0.0
        transposed = any(x.name == "transA" and x.i for x in node.attribute)
        inner = a[-2] if transposed else a[-1]
        return 2.0 * np.prod(out) * inner
    return 0.0


def device_description(provider: str) -> tuple[str, float | None, float | None]:
    """(device name, nominal fp32 peak GFLOP/s, fp16 peak) -- the peak is an estimate."""
    if provider == "cpu":
        return _cpu_description()
    return _gpu_description()


def _cpu_description() -> tuple[str, float | None, float | None]:
    info = _cpuinfo()  # the clock and the vector units, for the peak
    flags = set(info.get("flags", "").split())
    mhz = float(info["cpu MHz"]) if "cpu MHz" in info else None
    peak = providers.cpu_cores() * mhz / 1000 * _flops_per_cycle(info, flags) if mhz else None
    return harness.machine(), peak, None


def _cpuinfo() -> dict[str, str]:
    """The first processor's fields from /proc/cpuinfo (empty elsewhere)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return {}
    info: dict[str, str] = {}
    for line in text.split("\n\n")[0].splitlines():
        key, _, value = line.partition(":")
        info[key.strip()] = value.strip()
    return info


def _flops_per_cycle(info: dict[str, str], flags: set[str]) -> int:
    """Nominal FP32 FLOPs per cycle per core: two FMA pipes x vector lanes x 2. AMD Zen 2-4
    (family 23/25) run AVX-512 on 256-bit pipes, so their peak is AVX2's."""
    amd_256 = info.get("vendor_id") == "AuthenticAMD" and info.get("cpu family") in ("23", "25")
    if "avx512f" in flags and not amd_256:
        return 64
    return 32 if "fma" in flags else 8


# Nominal dense peaks in GFLOP/s: (fp32 on CUDA cores, fp16 on tensor cores).
_GPU_PEAKS = {"H100": (67_000.0, 989_000.0), "H200": (67_000.0, 989_000.0)}


def _gpu_description() -> tuple[str, float | None, float | None]:
    try:
        name = (
            subprocess.run(
                ["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"],
                capture_output=True,
                text=True,
                timeout=10,
            )
            .stdout.strip()
            .splitlines()[0]
        )
    except (OSError, IndexError, subprocess.SubprocessError):
        return "GPU (unknown)", None, None
    for key, (fp32, fp16) in _GPU_PEAKS.items():
        if key in name:
            return name, fp32, fp16
    return name, None, None


# ------------------------------------------------------------------------ timing


def _stats(seconds: list[float]) -> tuple[float, float]:
    return statistics.median(seconds) * 1e3, max(seconds) * 1e3


def measure(model, batch: int, repeats: int, keras_functions=None) -> dict[str, float]:
    """Median/max ms of separate() (host path) and of the ONNX graph inside it, and, given
    Keras' two functions, their medians. The runs alternate (host, Keras, Keras core) so a
    change in the machine's load hits both sides of the ratio alike."""
    rng = np.random.default_rng(SEED)
    audio = (0.1 * rng.standard_normal((batch, model.contract.window_samples))).astype(np.float32)
    model.warm_up(batch)
    host, network, keras_host, keras_model = [], [], [], []
    if keras_functions:
        for function in keras_functions:
            function()  # trace and warm up
    for _ in range(repeats):
        host.append(harness.timed(lambda: model.separate(audio)))
        network.append(model.last_network_seconds)
        if keras_functions:
            keras_host.append(harness.timed(keras_functions[0]))
            keras_model.append(harness.timed(keras_functions[1]))
    result = dict(zip(("host_median_ms", "host_max_ms"), _stats(host), strict=True))
    result |= dict(zip(("model_median_ms", "model_max_ms"), _stats(network), strict=True))
    if keras_functions:
        result["keras_host_ms"] = _stats(keras_host)[0]
        result["keras_model_ms"] = _stats(keras_model)[0]
    return result


def keras_functions(core, config, batch: int):
    """Two no-argument callables on one window of ``batch``: Keras STFT -> core -> Keras
    iSTFT, and the core alone; both ``tf.function`` (graph mode), results fetched to numpy."""
    import tensorflow as tf

    from train.stft import spectrogram_to_waveform, waveform_to_spectrogram

    n_fft, hop = config.n_fft, config.hop_length

    @tf.function(reduce_retracing=True)
    def whole(audio):
        estimate = core(waveform_to_spectrogram(audio, n_fft, hop), training=False)
        # (B, S, T, 2F) -> (B * S, T, F, 2): real/imag interleaved per bin
        pairs = tf.reshape(estimate, (-1, config.frames, config.n_bins, 2))
        return spectrogram_to_waveform(pairs, n_fft, hop)

    @tf.function(reduce_retracing=True)
    def alone(spectrogram):
        return core(spectrogram, training=False)

    rng = np.random.default_rng(SEED)
    audio = tf.constant(
        (0.1 * rng.standard_normal((batch, config.window_samples))).astype(np.float32)
    )
    spectrogram = tf.constant(waveform_to_spectrogram(audio, n_fft, hop))
    return (lambda: whole(audio).numpy(), lambda: alone(spectrogram).numpy())


# ------------------------------------------------------------------------ running


def available_providers() -> list[str]:
    """Providers that really start here: every GPU one the driver and ONNX Runtime allow,
    then the CPU."""
    choices, _ = providers.candidates("auto")
    return [choice.name for choice in choices]


def benchmark(args) -> tuple[list[Row], dict]:
    rows, devices = [], {}
    if args.model is not None:
        return bench_file(args, devices), devices
    for preset in args.presets:
        core = config = None
        if not args.no_keras or not all(export_path(preset, p).is_file() for p in args.precisions):
            core, config = build_core(preset)
        for precision in args.precisions:
            path = cached_export(preset, precision, core, config)
            for provider in args.providers:
                rows.extend(
                    _bench_model(args, preset, precision, provider, path, core, config, devices)
                )
        del core
    return rows, devices


def bench_file(args, devices: dict) -> list[Row]:
    """Rows for one given ONNX file (``--model``; ``bundled`` = the bundled model): trained
    weights can run at another speed than random ones (denormals near silence), so the
    shipped model is measured itself. No Keras comparison (there is no checkpoint here)."""
    path = bundled_model_path() if args.model == "bundled" else Path(args.model)
    float16 = load_model(path, "cpu").runner.io_dtype == np.float16
    precision = "fp16" if float16 else "fp32"
    rows = []
    for provider in args.providers:
        rows.extend(_bench_model(args, path.name, precision, provider, path, None, None, devices))
    return rows


def _bench_model(args, preset, precision, provider, path, core, config, devices) -> list[Row]:
    try:
        model = load_model(path, provider)
    except providers.ProviderUnavailable as error:
        print(f"skipping {preset} {precision} on {provider}: {error}", file=sys.stderr)
        return []
    name, peak32, peak16 = device_description(model.provider)
    devices[model.provider] = name
    peak = peak16 if precision == "fp16" else peak32
    rows = []
    for batch in args.batches:
        flops, params = count_flops(path, batch)
        with_keras = core is not None and not args.no_keras and precision == "fp32"
        functions = keras_functions(core, config, batch) if with_keras else None
        timing = measure(model, batch, args.repeats, functions)
        window = model.contract.window_seconds
        row = Row(
            preset=preset,
            precision=precision,
            provider=model.provider,
            batch=batch,
            params_m=params / 1e6,
            gflop=flops / 1e9,
            rtf=timing["host_median_ms"] / 1e3 / window,
            load={f"{hop:g}": timing["host_median_ms"] / 1e3 / hop for hop in HOPS},
            gflops_per_s=flops / 1e9 / (timing["model_median_ms"] / 1e3),
            peak_gflops=peak,
            **timing,
        )
        rows.append(row)
        print(format_row(row), flush=True)
    return rows


# ------------------------------------------------------------------------ output

HEADER = (
    "| preset | params | precision | provider | batch | GFLOP/window | host ms (median / max) "
    "| model ms (median / max) | RTF | load @1 s hop | load @0.5 s hop (default) "
    "| load @0.25 s hop | GFLOP/s (% of peak) "
    "| Keras ms (host / model) | speed-up vs Keras |"
)


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}" if value < 100 else f"{value:.0f}"


def format_row(row: Row) -> str:
    peak = f" ({100 * row.gflops_per_s / row.peak_gflops:.0f}%)" if row.peak_gflops else ""
    keras = (
        "-"
        if row.keras_host_ms is None
        else f"{_ms(row.keras_host_ms)} / {_ms(row.keras_model_ms)}"
    )
    speedup = "-" if row.speedup is None else f"{row.speedup:.2f}x"
    return (
        f"| {row.preset} | {row.params_m:.1f} M | {row.precision} | {row.provider} | {row.batch} "
        f"| {row.gflop:.1f} | {_ms(row.host_median_ms)} / {_ms(row.host_max_ms)} "
        f"| {_ms(row.model_median_ms)} / {_ms(row.model_max_ms)} | {row.rtf:.3f} "
        f"| {100 * row.load['1']:.1f}% | {100 * row.load['0.5']:.1f}% "
        f"| {100 * row.load['0.25']:.1f}% "
        f"| {row.gflops_per_s:.1f}{peak} | {keras} | {speedup} |"
    )


def markdown(rows: list[Row], meta: dict) -> list[str]:
    """The report's body: the devices and settings, the table, how to read it."""
    lines = [
        f"Devices: {'; '.join(f'{k}: {v}' for k, v in meta['devices'].items())}; "
        f"onnxruntime {meta['onnxruntime']}, {meta['repeats']} runs per row after a warm-up"
        f"{'; ' + meta['note'] if meta.get('note') else ''}.",
        "",
        HEADER,
        "|" + " --- |" * HEADER.count(" | ") + " --- |",
    ]
    lines += [format_row(row) for row in rows]
    lines += [
        "",
        "Per 4.064 s window. host = STFT + ONNX model + iSTFT (what the engine calls); "
        "RTF = host time / window length; load = host time / hop; GFLOP/s counts the graph's "
        "Conv/ConvTranspose/MatMul/Gemm multiply-adds over the model time, against the "
        "device's nominal peak (CPU: cores x clock x FP32 FLOPs per cycle from /proc/cpuinfo, "
        "an upper bound; GPU: the data sheet's dense figure); Keras = the same weights and "
        "window through TensorFlow in graph mode, same process; speed-up = Keras host time / "
        "host time.",
    ]
    return lines


def _split(text: str, allowed: tuple[str, ...] | None, option: str) -> list[str]:
    values = [v.strip() for v in text.split(",") if v.strip()]
    if allowed is not None:
        for value in values:
            if value not in allowed:
                raise SystemExit(
                    f"bench_inference: {option} must be among {', '.join(allowed)}, got {value!r}"
                )
    return values


def get_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--presets", default=",".join(PRESETS), help="comma-separated (default all)"
    )
    parser.add_argument(
        "--providers", default="", help="comma-separated (default: every one that starts here)"
    )
    parser.add_argument("--precisions", default="fp32", help="fp32,fp16 (default fp32)")
    parser.add_argument(
        "--batches", default="1,2", help="comma-separated batch sizes (default 1,2)"
    )
    parser.add_argument("--repeats", type=int, default=5, help="timed runs per row (default 5)")
    parser.add_argument("--no-keras", action="store_true", help="skip the Keras comparison")
    parser.add_argument(
        "--model",
        help="measure this ONNX file instead of random-weight presets ('bundled' = the bundled "
        "model); --presets and --precisions do not apply",
    )
    parser.add_argument(
        "--out", type=Path, help=f"results folder (default {harness.RESULTS}; none with --smoke)"
    )
    parser.add_argument("--note", default="", help="a note for the markdown, e.g. what else ran")
    parser.add_argument("--smoke", action="store_true", help="CI: tiny preset, batch 1, 2 runs")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = get_parser().parse_args(argv)
    run = harness.Run("bench_inference", argv)
    logging.basicConfig(level=logging.INFO, format="%(name)s: %(message)s")
    if args.smoke:
        args.presets, args.batches, args.repeats = "tiny", "1", 2
    elif args.out is None:
        args.out = harness.RESULTS
    args.presets = _split(args.presets, PRESETS, "--presets")
    args.precisions = _split(args.precisions, PRECISIONS, "--precisions")
    args.providers = (
        _split(args.providers, providers.CHOICES[1:], "--providers") or available_providers()
    )
    args.batches = [int(b) for b in _split(args.batches, None, "--batches")]
    import onnxruntime

    print(HEADER, flush=True)
    rows, devices = benchmark(args)
    meta = {
        "devices": devices,
        "onnxruntime": onnxruntime.__version__,
        "repeats": args.repeats,
        "cpu_threads": providers.cpu_threads(),
        "note": args.note,
    }
    if args.out is not None:
        data = {
            "meta": meta,
            "rows": [dataclasses.asdict(r) | {"speedup": r.speedup} for r in rows],
        }
        run.write(*harness.in_folder(args.out, "inference"), data, markdown(rows, meta))
        print(f"wrote {args.out / 'inference.json'} and {args.out / 'inference.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
