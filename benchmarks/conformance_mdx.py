"""Conformance of the host's ``mdx`` family with python-audio-separator's MDX path.

    python -m benchmarks conformance_mdx --setup         # once: a venv of its own (PyTorch)
    python -m benchmarks conformance_mdx                 # run the comparison

python-audio-separator (an independent implementation of UVR's MDX-Net conventions, with
PyTorch's ``torch.stft`` / ``torch.istft``) is installed with ``--setup`` into its own
virtual environment (``--venv``, default ``/tmp/stream-sep-conformance-venv``): PyTorch
brings gigabytes of libraries, so it is never a dependency of the host or of CI.

The model is an MDX-shaped network with random weights at UVR's real tensor sizes
(``[batch, 4, 3072, 256]``, n_fft 7680, hop 1024: :mod:`mdx_models`, narrow to keep the
CPU time down); the audio is 30 s of generated stereo at 44.1 kHz. Both implementations run
the same ONNX file in ONNX Runtime, so every difference is in what is around the network.

Compared (max abs difference, and SDR of ours against theirs):

1. ``window``: one 261,120-sample chunk through their ``MDXSeparator.run_model`` and our
   ``MdxModel.separate_channels`` (compensate 1: the raw network stem). Same STFT, layout,
   band limit and inverse: float rounding only.
2. ``uvr chunking``: the whole song through their ``demix`` (UVR's chunking: n_fft/2 zeros in
   front, chunks every (1 - overlap) x chunk, Hann-weighted overlap-add, overlap 0.25) and
   through the same chunking written here around our ``separate_channels``: float rounding.
3. ``host offline``: the whole song through our offline plan (``separate_overlap_add``:
   windows centred on every hop of half a window, raised-cosine tapers) against their
   ``demix``. A deliberate difference: the windows lie elsewhere, and this random network's
   output depends on where in the window a sound is (a trained model's much less so).
4. ``karaoke``: the host's karaoke (mixture - compensate x stem, compensate 1.035) against
   theirs (``separate()``'s secondary stem formula, mixture - primary x compensate, applied
   to ``demix``): same formula; their 2025 peak rescaling of the input is left out (UVR
   does not do it). Their *primary* stem is not multiplied by compensate (UVR's is, and ours
   is); that difference is exactly the factor 1.035, reported as ``primary gain``.

Writes ``conformance_mdx.json`` and ``conformance_mdx.md`` under ``--out``.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

import numpy as np

# Imports of this project (benchmarks.harness, stream_sep) stay inside the host side's
# functions: the reference side runs this module in the conformance venv, which does not
# have the project's dependencies.
REPO = Path(__file__).resolve().parent.parent
DEFAULT_VENV = Path("/tmp/stream-sep-conformance-venv")
AUDIO_SEPARATOR = "audio-separator[cpu]==0.47.1"
RATE = 44100
N_FFT, DIM_F, DIM_T, HOP = 7680, 3072, 256, 1024
COMPENSATE = 1.035
OVERLAP = 0.25
SECONDS = 30.0


# ---------------------------------------------------------------------------- reference side
def reference(workdir: Path) -> None:
    """Runs inside the conformance venv: python-audio-separator on ``workdir/mix.npy`` with
    every ``workdir/<net>/model.onnx``."""
    import logging

    import torch
    from audio_separator.separator.architectures.mdx_separator import MDXSeparator

    mix = np.load(workdir / "mix.npy")
    for folder in sorted(p.parent for p in workdir.glob("*/model.onnx")):
        common = {
            "logger": logging.getLogger("audio_separator"),
            "log_level": logging.WARNING,
            "torch_device": torch.device("cpu"),
            "torch_device_cpu": torch.device("cpu"),
            "torch_device_mps": None,
            "onnx_execution_provider": ["CPUExecutionProvider"],
            "model_name": "conformance",
            "model_path": str(folder / "model.onnx"),
            "model_data": {
                "compensate": COMPENSATE,
                "mdx_dim_f_set": DIM_F,
                "mdx_dim_t_set": int(np.log2(DIM_T)),
                "mdx_n_fft_scale_set": N_FFT,
                "primary_stem": "Vocals",
            },
            "output_format": "wav",
            "output_dir": str(folder),
            "normalization_threshold": 0.9,
            "amplification_threshold": 0.0,
            "enable_denoise": False,
            "output_single_stem": None,
            "invert_using_spec": False,
            "sample_rate": RATE,
            "use_soundfile": True,
        }
        results = {}
        for overlap in (OVERLAP, 0.5):
            arch = {"segment_size": DIM_T, "overlap": overlap, "batch_size": 1,
                    "hop_length": HOP, "enable_denoise": False}  # fmt: skip
            separator = MDXSeparator(common, arch)
            separator.initialize_model_settings()
            with np.errstate(invalid="ignore"):  # their last, 2-sample chunk weighs 0
                results[f"demix_{overlap}"] = separator.demix(mix).astype(np.float32)
        chunk = mix[:, : separator.chunk_size]
        window = separator.run_model(torch.tensor(chunk[None], dtype=torch.float32))[0]
        source = results[f"demix_{OVERLAP}"]
        secondary = mix - source * separator.compensate  # separate()'s formula, no rescaling
        np.savez(
            folder / "reference.npz",
            window=window.astype(np.float32),
            demix=source,
            demix_half=results["demix_0.5"],
            secondary=secondary.astype(np.float32),
            chunk_size=separator.chunk_size,
        )


# ---------------------------------------------------------------------------- host side
def song(seconds: float = SECONDS, seed: int = 0) -> np.ndarray:
    """(2, n) float32: chords, a gliding voice-like tone with harmonics, noise bursts, and
    content above the model's 17.6 kHz band."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * RATE)) / RATE
    chords = sum(0.05 * np.sin(2 * np.pi * f * t) for f in (110, 164.8, 220, 329.6, 440))
    f0 = 220 * 2 ** (np.sin(2 * np.pi * 0.3 * t) / 2)
    phase = 2 * np.pi * np.cumsum(f0) / RATE
    voice = sum(0.08 / k * np.sin(k * phase) for k in range(1, 12)) * (
        np.sin(2 * np.pi * 2 * t) > 0
    )
    bursts = 0.05 * rng.standard_normal(t.size) * (np.sin(2 * np.pi * 0.5 * t) > 0.9)
    air = 0.01 * np.sin(2 * np.pi * 19000 * t)
    left = chords + voice + bursts + air
    right = 0.7 * chords + voice + 0.5 * bursts
    return np.stack([left, right]).astype(np.float32)


def uvr_chunking(separate, mix: np.ndarray, chunk_size: int) -> np.ndarray:
    """UVR's demix loop (as the module docstring describes it) around ``separate``:
    (2, W) -> (2, W) per chunk. Returns (2, n)."""
    trim = N_FFT // 2
    gen_size = chunk_size - 2 * trim
    pad = gen_size + trim - mix.shape[-1] % gen_size
    mixture = np.concatenate(
        [np.zeros((2, trim), np.float32), mix, np.zeros((2, pad), np.float32)], 1
    )
    step = int((1 - OVERLAP) * chunk_size)
    result = np.zeros((2, mixture.shape[-1]), np.float64)
    divider = np.zeros((2, mixture.shape[-1]), np.float64)
    for start in range(0, mixture.shape[-1], step):  # the last, 2-sample chunk weighs 0
        end = min(start + chunk_size, mixture.shape[-1])
        part = np.zeros((2, chunk_size), np.float32)
        part[:, : end - start] = mixture[:, start:end]
        window = np.hanning(end - start)
        estimate = separate(part)[:, : end - start]
        result[:, start:end] += estimate * window
        divider[:, start:end] += window
    with np.errstate(invalid="ignore"):
        averaged = result / divider
    return averaged[:, trim:-trim][:, : mix.shape[-1]].astype(np.float32)


def compare(ours: np.ndarray, theirs: np.ndarray) -> dict:
    error = ours.astype(np.float64) - theirs
    sdr = 10 * np.log10(np.sum(theirs.astype(np.float64) ** 2) / max(np.sum(error**2), 1e-30))
    return {"max_abs": float(np.abs(error).max()), "peak": float(np.abs(theirs).max()),
            "sdr_db": round(float(sdr), 2)}  # fmt: skip


# name -> (levels, layers, growth) of mdx_models' network, or None for the linear model:
# a U-Net of UVR's depth; a network with no downsampling (its output depends on a few frames
# around each one); a linear model (a fixed gain per bin plus some crosstalk between left and
# right), whose output hardly depends on where the windows lie.
NETWORKS = {"linear": None, "local": (0, 3, 8), "unet": (5, 3, 8)}


def linear_model(path: Path) -> Path:
    """out = g[f] * x + h[f] * (x with left and right swapped), g and h smooth random gains."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(5)
    bins = np.arange(DIM_F)
    g = 0.5 + 0.4 * np.sin(2 * np.pi * bins / 700 + rng.uniform(0, 6))
    h = 0.2 + 0.1 * np.cos(2 * np.pi * bins / 1300 + rng.uniform(0, 6))
    weights = [
        numpy_helper.from_array(g.reshape(1, 1, DIM_F, 1).astype(np.float32), "g"),
        numpy_helper.from_array(h.reshape(1, 1, DIM_F, 1).astype(np.float32), "h"),
        numpy_helper.from_array(np.array([2, 3, 0, 1], np.int64), "swap"),
    ]
    nodes = [
        helper.make_node("Mul", ["input", "g"], ["direct"]),
        helper.make_node("Gather", ["input", "swap"], ["swapped"], axis=1),
        helper.make_node("Mul", ["swapped", "h"], ["cross"]),
        helper.make_node("Add", ["direct", "cross"], ["output"]),
    ]
    dims = ["batch", 4, DIM_F, DIM_T]
    graph = helper.make_graph(
        nodes,
        "linear",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, dims)],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, dims)],
        weights,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, path)
    return path


def build_models(folder: Path, mix: np.ndarray, network) -> tuple[Path, Path]:
    """The raw network (what audio-separator loads), a random one scaled so that its stem on
    the song's first window has the mixture's level, and our shelf copies of it: compensate
    1 (the raw stem) and COMPENSATE."""
    import onnx
    import onnxruntime

    from benchmarks import mdx_models
    from stream_sep.models.families import mdx

    folder.mkdir(parents=True, exist_ok=True)
    raw = folder / "model.onnx"
    contract = mdx.MdxContract(n_fft=N_FFT, dim_f=DIM_F, dim_t=DIM_T)
    if network is None:
        linear_model(raw)
    else:
        levels, layers, growth = network
        shape = mdx_models.NetShape(DIM_F, DIM_T, levels, layers, growth)
        mdx_models.build(raw, shape, seed=3, scale=1.0)
        probe = np.zeros((1, 4, DIM_F, DIM_T), np.float32)
        mdx.to_network_input(mix[None, :, : contract.window_samples], contract, probe)
        session = onnxruntime.InferenceSession(str(raw), providers=["CPUExecutionProvider"])
        gain = np.std(probe) / np.std(session.run(None, {"input": probe})[0])
        mdx_models.build(raw, shape, seed=3, scale=float(gain))
    copies = []
    for name, compensate in (("raw.onnx", 1.0), ("compensated.onnx", COMPENSATE)):
        proto = onnx.load(raw)
        stored = mdx.MdxContract(n_fft=N_FFT, dim_f=DIM_F, dim_t=DIM_T, compensate=compensate)
        for key, value in stored.to_metadata().items():
            proto.metadata_props.add(key=key, value=value)
        onnx.save(proto, folder / name)
        copies.append(folder / name)
    return tuple(copies)


def stereo_stem(model):
    """(2, W) -> (2, W): the host's stem of one stereo chunk."""
    return lambda part: model.separate_channels(part, 2)[:, 0]


def host_side(workdir: Path, venv: Path) -> dict:
    from stream_sep.models.loading import load_model
    from stream_sep.offline.overlap_add import separate_overlap_add

    mix = song()
    paths = {name: build_models(workdir / name, mix, shape) for name, shape in NETWORKS.items()}
    np.save(workdir / "mix.npy", mix)
    subprocess.run(
        [str(venv / "bin" / "python"), "-m", "benchmarks.conformance_mdx", "--reference",
         str(workdir)],
        check=True,
        cwd=REPO,
    )  # fmt: skip
    results = {}
    for name, (raw_path, compensated_path) in paths.items():
        ref = np.load(workdir / name / "reference.npz")
        raw = load_model(raw_path, "cpu")
        compensated = load_model(compensated_path, "cpu")
        chunk = int(ref["chunk_size"])
        assert chunk == raw.contract.window_samples, (chunk, raw.contract.window_samples)
        window = raw.separate_channels(mix[:, :chunk], 2)[:, 0]
        chunked = uvr_chunking(stereo_stem(raw), mix, chunk)
        offline = separate_overlap_add(raw, mix, RATE)
        karaoke_uvr = mix - uvr_chunking(stereo_stem(compensated), mix, chunk)
        karaoke = mix - separate_overlap_add(compensated, mix, RATE)
        results[name] = {
            "window": compare(window, ref["window"]),
            "uvr chunking": compare(chunked, ref["demix"]),
            "host offline": compare(offline, ref["demix"]),
            "theirs, overlap 0.5 vs 0.25": compare(ref["demix_half"], ref["demix"]),
            "karaoke, uvr chunking": compare(karaoke_uvr, ref["secondary"]),
            "karaoke, host offline": compare(karaoke, ref["secondary"]),
        }
    results["primary gain"] = {
        "ours_over_theirs": COMPENSATE,
        "note": "UVR multiplies the primary stem by compensate; audio-separator 0.47.1 does not",
    }
    return results


TITLE = "MDX conformance: host `mdx` family vs python-audio-separator 0.47.1"


def markdown(results: dict) -> list[str]:
    """The report's body: one row per network and comparison."""
    lines = [
        f"The same ONNX file, [batch, 4, {DIM_F}, {DIM_T}], n_fft {N_FFT}, {SECONDS:g} s stereo "
        "at 44.1 kHz.",
        "",
        "| network | comparison | max abs difference | peak of theirs | SDR ours vs theirs |",
        "|---|---|---|---|---|",
    ]
    for network in NETWORKS:
        for name, row in results[network].items():
            lines.append(
                f"| {network} | {name} | {row['max_abs']:.2e} | {row['peak']:.3f} | "
                f"{row['sdr_db']} dB |"
            )
    return lines


def setup(venv: Path) -> None:
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "-q"]
    subprocess.run([*pip, AUDIO_SEPARATOR], check=True)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--venv", type=Path, default=DEFAULT_VENV)
    parser.add_argument("--setup", action="store_true", help="create the venv and install")
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/stream-sep-conformance"))
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results")
    parser.add_argument("--reference", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.reference is not None:
        reference(args.reference)
        return 0
    if args.setup:
        setup(args.venv)
        return 0
    if not (args.venv / "bin" / "python").exists():
        parser.error(f"no venv at {args.venv}: run with --setup first")
    from benchmarks.harness import Run, in_folder

    run = Run("conformance_mdx", argv)
    args.workdir.mkdir(parents=True, exist_ok=True)
    results = host_side(args.workdir, args.venv)
    text = run.write(*in_folder(args.out, "conformance_mdx"), results, markdown(results), TITLE)
    print(text, end="")
    return 0


if __name__ == "__main__":
    sys.exit(main())
