"""ONNX Runtime's CPU options for the bundled model, timed in one run, variants interleaved.

    python -m benchmarks bench_providers --mir1k /work/shared/data/mir1k \\
        --other-python /tmp/ov/bin/python        # the bundled model; SDR; OpenVINO
    python -m benchmarks bench_providers --smoke --out /tmp/providers   # CI: a gain model

Every variant is one session of the same model behind :class:`SeparationModel` (the host
path: STFT, ONNX core through IOBinding, iSTFT), timed per window at batch 1 (a mono stream,
or the mid channel) and batch 2 (stereo):

- ``default``: the host's own session (``providers.session_options``: ORT_ENABLE_ALL,
  intra-op threads = ``providers.intra_op_threads()``, inter-op 1, no spinning, denormals
  as zero);
- ``intra-op 1``, ``spinning on``: the default with that one change;
- ``level EXTENDED``, ``level BASIC``: a lower graph optimisation level;
- ``NCHWc off``: ORT_ENABLE_ALL without the NchwcTransformer (the layout transform to
  blocked channels), through ``InferenceSession(disabled_optimizers=...)``;
- ``saved optimised``: the graph ONNX Runtime optimised once at ORT_ENABLE_ALL
  (``SessionOptions.optimized_model_filepath``), loaded again with optimisations off;
- ``float16``: ``export.fp16.to_float16`` of the model (float16 inside, float32 at the edges);
- ``int8 dynamic``: ``onnxruntime.quantization.quantize_dynamic`` (int8 weights, activations
  quantised per run); ``int8 MatMul``: the same for the MatMuls only;
- with ``--other-python PY``: the variants of another ONNX Runtime wheel in another
  environment (``onnxruntime-openvino`` provides the same ``onnxruntime`` module, so it
  cannot share this one): its plain CPU provider with the host's options, ``openvino``
  (its execution provider, batch axis dynamic) and ``openvino static`` (one session per
  batch size with the batch axis pinned), run in a worker process that this one drives,
  still in the same round-robin.

The runs alternate round-robin (every variant once at batch 1, then once at batch 2, and
again, ``--rounds`` times, each round's cycle starting one variant later) so a change in the
machine's load hits all variants alike, and no variant always runs after the same one; the
table gives the median and 90th percentile per window and the ratio of medians to
``default``. Each variant's output on one noise window is compared with the default's (SNR
in dB); with ``--mir1k DIR`` the float16 and int8 models, and any other variant whose
output differs from the default's by more than rounding, are scored on held-out MIR-1K
clips with the engine at its defaults (``offline.estimate_vocals(like_live=True)`` through
the evaluate command's functions), MDX vocals SDR against the default's on the same clips. Session load times are measured too
(the original model at ORT_ENABLE_ALL against the saved optimised one, alternating).

Writes ``benchmarks/results/providers.{json,md}`` (or ``--out STEM``) with the machine,
the date and the load average before and after: the machine may be shared, so the ratios
within one run are what counts.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

from benchmarks.harness import REPO, RESULTS, Run, Stopwatch, at_stem, timed
from stream_sep.models import providers
from stream_sep.models.bundled import bundled_model_path
from stream_sep.models.contract import contract_from_metadata
from stream_sep.models.loading import read_model_file
from stream_sep.models.runtime import Runner, SeparationModel

BATCHES = (1, 2)
SEED = 0
NCHWC_DOMAIN = "com.microsoft.nchwc"
# An output within this SNR of the default's is float32 rounding (a different summation
# order), not a different model: it is not scored on the clips.
SAME_OUTPUT_SNR_DB = 60.0
LOAD_REPEATS = 5


# ---------------------------------------------------------------------------- variants
@dataclasses.dataclass
class Variant:
    """One way of running the model. ``model`` is a :class:`SeparationModel` (in this
    process) or None for a variant that lives in the worker (``remote``)."""

    name: str
    note: str
    model: SeparationModel | None = None
    remote: Worker | None = None
    load_s: float = 0.0
    provider: str = "cpu"
    onnxruntime: str = ""
    error: str | None = None
    scored: bool = False  # always scored on the clips (another precision: another model)

    def time_window(self, audio: np.ndarray) -> float:
        """Seconds of one ``separate`` call on (B, window) ``audio`` (already warmed up)."""
        if self.remote is not None:
            return self.remote.ask(cmd="time", variant=self.name, batch=audio.shape[0])["s"]
        return timed(lambda: self.model.separate(audio))

    def output(self, audio: np.ndarray, folder: Path) -> np.ndarray:
        """(B, S, window) float32 of ``separate(audio)``."""
        if self.remote is None:
            return self.model.separate(audio).copy()
        given, taken = folder / "input.npy", folder / f"{self.name}.npy"
        np.save(given, audio)
        self.remote.ask(cmd="output", variant=self.name, input=str(given), output=str(taken))
        return np.load(taken)


def host_options(**changes):
    """The host's CPU session options (``providers.session_options``) with ``changes``:
    intra (threads), spinning, level (a GraphOptimizationLevel), save (a path)."""
    import onnxruntime

    options = providers.session_options(providers.choose("cpu"))
    if "intra" in changes:
        options.intra_op_num_threads = changes["intra"]
    if changes.get("spinning"):
        with providers.captured_native_output():  # ONNX Runtime warns that it overwrites
            options.add_session_config_entry("session.intra_op.allow_spinning", "1")
    if "level" in changes:
        options.graph_optimization_level = getattr(
            onnxruntime.GraphOptimizationLevel, changes["level"]
        )
    if "save" in changes:
        options.optimized_model_filepath = str(changes["save"])
    return options


def make_session(data: bytes, options, providers_list=None, disabled=None):
    """(session, seconds to create it) on the CPU provider unless ``providers_list``."""
    import onnxruntime

    extra = {"disabled_optimizers": disabled} if disabled else {}
    with Stopwatch() as watch, providers.captured_native_output():
        session = onnxruntime.InferenceSession(
            data, options, providers=providers_list or ["CPUExecutionProvider"], **extra
        )
    return session, watch.seconds


def wrap(session, data: bytes, path: Path, name: str) -> SeparationModel:
    """A :class:`SeparationModel` around ``session`` (the host's Runner, IOBinding on the
    host's arrays: never the GPU code path, whatever the provider is called)."""
    contract = contract_from_metadata(session.get_modelmeta().custom_metadata_map, path.name)
    choice = providers.ProviderChoice("cpu", ["CPUExecutionProvider"], name)
    runner = Runner(data, session, choice, contract, staged=False, per_batch_sessions=False)
    return SeparationModel(runner, contract, path, name)


def local_variants(path: Path, folder: Path) -> tuple[list[Variant], dict]:
    """The variants in this process and facts about them (NCHWc nodes, load times)."""
    import onnx
    import onnxruntime

    data = read_model_file(path)
    version = onnxruntime.__version__
    specs = [
        ("default", "the host's session options", {}, None),
        ("intra-op 1", "one intra-op thread", {"intra": 1}, None),
        ("spinning on", "pool threads spin between operators", {"spinning": True}, None),
        ("level EXTENDED", "ORT_ENABLE_EXTENDED (no layout transforms)", {"level": "ORT_ENABLE_EXTENDED"}, None),
        ("level BASIC", "ORT_ENABLE_BASIC", {"level": "ORT_ENABLE_BASIC"}, None),
        ("NCHWc off", "ORT_ENABLE_ALL without the NchwcTransformer", {}, ["NchwcTransformer"]),
    ]  # fmt: skip
    variants = []
    for name, note, changes, disabled in specs:
        session, took = make_session(data, host_options(**changes), disabled=disabled)
        variants.append(Variant(name, note, wrap(session, data, path, name), load_s=took,
                                onnxruntime=version))  # fmt: skip
    facts = {"nchwc_nodes": {}}
    # The optimised graphs, saved: how many NCHWc nodes each has (proves the switch works),
    # and the saved ORT_ENABLE_ALL graph as a variant of its own.
    for name, disabled in (("default", None), ("NCHWc off", ["NchwcTransformer"])):
        saved = folder / f"optimised-{name.replace(' ', '-')}.onnx"
        make_session(data, host_options(save=saved), disabled=disabled)
        graph = onnx.load(saved).graph
        facts["nchwc_nodes"][name] = sum(node.domain == NCHWC_DOMAIN for node in graph.node)
    saved = folder / "optimised-default.onnx"
    saved_data = saved.read_bytes()
    session, took = make_session(saved_data, host_options(level="ORT_DISABLE_ALL"))
    variants.append(Variant("saved optimised", "the ORT_ENABLE_ALL graph saved once, loaded "
                            "with optimisations off", wrap(session, saved_data, path, "saved"),
                            load_s=took, onnxruntime=version))  # fmt: skip
    facts["load_s"] = load_times(data, saved_data)
    variants += precision_variants(path, data, folder, version)
    return variants, facts


def load_times(data: bytes, saved_data: bytes) -> dict:
    """Median seconds to create a session: the model at ORT_ENABLE_ALL and the saved
    optimised graph with optimisations off, alternating."""
    original, optimised = [], []
    for _ in range(LOAD_REPEATS):
        original.append(make_session(data, host_options())[1])
        optimised.append(make_session(saved_data, host_options(level="ORT_DISABLE_ALL"))[1])
    return {
        "original_all_s": statistics.median(original),
        "saved_optimised_s": statistics.median(optimised),
    }


def precision_variants(path: Path, data: bytes, folder: Path, version: str) -> list[Variant]:
    """float16 (export/fp16.py) and dynamic int8 (onnxruntime.quantization) models, each
    with the host's session options; a conversion that fails is reported, not fatal."""
    variants = []
    for name, note, convert in (
        ("float16", "export.fp16.to_float16: float16 weights and arithmetic", to_float16),
        ("int8 dynamic", "quantize_dynamic: int8 weights, uint8 activations", to_int8),
        ("int8 MatMul", "quantize_dynamic of the MatMuls only (Conv stays float32)",
         to_int8_matmul),
    ):  # fmt: skip
        try:
            with Stopwatch() as watch:
                converted = convert(path, folder)
            convert_s = watch.seconds
            session, took = make_session(converted, host_options())
        except Exception as error:  # noqa: BLE001 - the conversion's failure is the result
            variants.append(Variant(name, note, error=f"{type(error).__name__}: {error}"))
            continue
        variant = Variant(name, note, wrap(session, converted, path, name), load_s=took,
                          onnxruntime=version, scored=True)  # fmt: skip
        variant.note += f" (converted in {convert_s:.1f} s, {len(converted) / 1e6:.1f} MB)"
        variants.append(variant)
    return variants


def to_float16(path: Path, folder: Path) -> bytes:
    import onnx

    from export.fp16 import to_float16 as convert

    return convert(onnx.load(path)).SerializeToString()


def to_int8(path: Path, folder: Path, op_types: list[str] | None = None) -> bytes:
    """Dynamic int8 quantisation of ``op_types`` (None: every kind it supports)."""
    import logging

    from onnxruntime.quantization import QuantType, quantize_dynamic

    target = folder / f"int8-{'-'.join(op_types or ['all'])}.onnx"
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)  # "please consider pre-processing" on every call
    try:
        quantize_dynamic(path, target, op_types_to_quantize=op_types, weight_type=QuantType.QInt8)
    finally:
        root.setLevel(level)
    return target.read_bytes()


def to_int8_matmul(path: Path, folder: Path) -> bytes:
    return to_int8(path, folder, ["MatMul"])


# ---------------------------------------------------------------------------- worker
class Worker:
    """A process of another Python environment (another ONNX Runtime wheel) that holds
    variants and runs them on request: one JSON line in, one JSON line out."""

    def __init__(self, python: str, model: Path):
        env = dict(os.environ, PYTHONPATH=str(REPO))
        self.process = subprocess.Popen(
            [python, "-m", "benchmarks.bench_providers", "--worker", str(model)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
            env=env,
            cwd=tempfile.gettempdir(),
        )
        self.hello = self._read()

    def _read(self) -> dict:
        line = self.process.stdout.readline()
        if not line:
            raise RuntimeError(f"the worker exited (status {self.process.wait()})")
        return json.loads(line)

    def ask(self, **request) -> dict:
        self.process.stdin.write(json.dumps(request) + "\n")
        self.process.stdin.flush()
        answer = self._read()
        if "error" in answer:
            raise RuntimeError(answer["error"])
        return answer

    def close(self) -> None:
        with contextlib.suppress(OSError, ValueError):
            self.process.stdin.close()
        self.process.wait(timeout=30)


def remote_variants(python: str, model: Path) -> tuple[list[Variant], Worker | None, str | None]:
    """The worker's variants, or ([], None, why not)."""
    try:
        worker = Worker(python, model)
    except (OSError, RuntimeError, json.JSONDecodeError) as error:
        return [], None, f"the worker in {python} did not start: {error}"
    variants = []
    for item in worker.hello["variants"]:
        variant = Variant(item["name"], item["note"], remote=worker, load_s=item.get("load_s", 0))
        variant.provider, variant.error = item.get("provider", "?"), item.get("error")
        variant.onnxruntime = worker.hello["onnxruntime"]
        variants.append(variant)
    return variants, worker, None


def worker_main(model_path: str) -> int:
    """The worker's side: build the variants of this environment's ONNX Runtime, say hello,
    then answer requests until stdin closes. Native output goes to stderr."""
    import onnxruntime

    answers = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)
    path = Path(model_path)
    data = read_model_file(path)
    models, hello = {}, []
    tag = f"onnxruntime {onnxruntime.__version__}"
    specs = [(f"cpu, {tag}", "the CPU provider of the other wheel, the host's options",
              ["CPUExecutionProvider"])]  # fmt: skip
    openvino = [("OpenVINOExecutionProvider", {"device_type": "CPU"}), "CPUExecutionProvider"]
    specs.append((f"openvino, {tag}", "the OpenVINO provider (device CPU), batch axis dynamic",
                  openvino))  # fmt: skip
    specs.append((f"openvino static, {tag}", "the OpenVINO provider (device CPU), one session "
                  "per batch with the batch axis pinned", openvino))  # fmt: skip
    for name, note, provider_list in specs:
        item = {"name": name, "note": note}
        wanted = provider_list[0] if isinstance(provider_list[0], str) else provider_list[0][0]
        if wanted not in onnxruntime.get_available_providers():
            item["error"] = f"{wanted} is not in this onnxruntime build"
            hello.append(item)
            continue
        try:
            if "static" in name:
                models[name], took, session = static_batches(data, path, name, provider_list)
            else:
                session, took = make_session(data, host_options(), provider_list)
                models[name] = wrap(session, data, path, name)
            item.update(load_s=took, provider=short_name(session.get_providers()[0]))
        except Exception as error:  # noqa: BLE001 - reported to the caller
            item["error"] = f"{type(error).__name__}: {error}"
        hello.append(item)
    reply(answers, {"variants": hello, "onnxruntime": onnxruntime.__version__})
    inputs: dict[int, np.ndarray] = {}
    for line in sys.stdin:
        request = json.loads(line)
        try:
            reply(answers, serve(request, models, inputs))
        except Exception as error:  # noqa: BLE001 - the caller reports it
            reply(answers, {"error": f"{type(error).__name__}: {error}"})
    return 0


class ByBatch:
    """One model per batch size (sessions with the batch axis pinned), behind the one
    ``separate`` the engine calls: (B, window) -> (B, S, window)."""

    def __init__(self, models: dict):
        self.models = models
        self.contract = next(iter(models.values())).contract

    def separate(self, audio: np.ndarray) -> np.ndarray:
        return self.models[audio.shape[0]].separate(audio)

    def warm_up(self, batch: int) -> float:
        return self.models[batch].warm_up(batch)


def static_batches(data: bytes, path: Path, name: str, provider_list) -> tuple:
    """(ByBatch for batches 1 and 2, seconds to create both sessions, the last session)."""
    models, took = {}, 0.0
    for batch in BATCHES:
        options = host_options()
        options.add_free_dimension_override_by_name("batch", batch)
        session, seconds = make_session(data, options, provider_list)
        models[batch], took = wrap(session, data, path, name), took + seconds
    return ByBatch(models), took, session


def short_name(provider: str) -> str:
    """'OpenVINOExecutionProvider' -> 'openvino'."""
    return provider.removesuffix("ExecutionProvider").lower()


def serve(request: dict, models: dict, inputs: dict) -> dict:
    model = models[request["variant"]]
    if request["cmd"] == "warm":
        batch = request["batch"]
        inputs[batch] = noise(batch, model.contract.window_samples)
        model.warm_up(batch)
        model.separate(inputs[batch])
        return {}
    if request["cmd"] == "time":
        audio = inputs[request["batch"]]
        return {"s": timed(lambda: model.separate(audio))}
    if request["cmd"] == "output":
        np.save(request["output"], model.separate(np.load(request["input"])))
        return {}
    if request["cmd"] == "sdr":
        return {"clips": score_clips(model, request["mir1k"], request["singers"], request["every"])}
    raise ValueError(f"unknown request {request['cmd']!r}")


def reply(stream, answer: dict) -> None:
    stream.write(json.dumps(answer) + "\n")
    stream.flush()


# ---------------------------------------------------------------------------- timing
def noise(batch: int, samples: int) -> np.ndarray:
    """(batch, samples) float32 quiet noise, the same for every variant and process."""
    rng = np.random.default_rng(SEED)
    return (0.1 * rng.standard_normal((batch, samples))).astype(np.float32)


def warm(variant: Variant, batch: int, audio: np.ndarray) -> None:
    if variant.remote is not None:
        variant.remote.ask(cmd="warm", variant=variant.name, batch=batch)
        return
    variant.model.warm_up(batch)
    variant.model.separate(audio)


def rotated(items: list, shift: int) -> list:
    """``items`` starting at index ``shift`` (modulo its length), wrapping around."""
    shift %= len(items)
    return items[shift:] + items[:shift]


def time_round_robin(variants: list[Variant], rounds: int, window: int) -> dict:
    """{name: {batch: [seconds, ...]}}: every round runs each variant once per batch, in
    the same cyclic order, each round starting one variant later (so no variant always
    follows the same one, or always comes first after the other batch size)."""
    inputs = {batch: noise(batch, window) for batch in BATCHES}
    for variant in variants:
        for batch in BATCHES:
            warm(variant, batch, inputs[batch])
    times = {v.name: {batch: [] for batch in BATCHES} for v in variants}
    for number in range(rounds):
        for batch in BATCHES:
            for variant in rotated(variants, number):
                times[variant.name][batch].append(variant.time_window(inputs[batch]))
        print(f"round {number + 1}/{rounds}", file=sys.stderr, flush=True)
    return times


def rows_from(variants: list[Variant], times: dict) -> list[dict]:
    rows = []
    for batch in BATCHES:
        base = statistics.median(times["default"][batch])
        for variant in variants:
            seconds = times[variant.name][batch]
            median = statistics.median(seconds)
            rows.append(
                {
                    "variant": variant.name,
                    "batch": batch,
                    "median_ms": 1000 * median,
                    "p90_ms": 1000 * float(np.percentile(seconds, 90)),
                    "min_ms": 1000 * min(seconds),
                    "runs": len(seconds),
                    "ratio_to_default": median / base,
                }
            )
    return rows


# ---------------------------------------------------------------------------- quality
def output_snr(variants: list[Variant], window: int, folder: Path) -> dict[str, float]:
    """{name: SNR in dB of the variant's stereo output against the default's}, one window
    of noise (inf when identical)."""
    audio = noise(2, window)
    reference = variants[0].output(audio, folder).astype(np.float64)
    result = {}
    for variant in variants:
        error = variant.output(audio, folder).astype(np.float64) - reference
        power = float(np.sum(error**2))
        result[variant.name] = (
            float("inf") if power == 0 else 10 * np.log10(np.sum(reference**2) / power)
        )
    return result


def score_clips(model, root: str, singers: list[str], every: int) -> list[dict]:
    """Vocals SDR (MDX) per held-out MIR-1K clip, the engine at its defaults like live."""
    from stream_sep import evaluation
    from stream_sep.evaluation import datasets, metrics

    options = evaluation.engine_options(streaming=True)
    scores = []
    for ref in datasets.find_clips(root, "mir1k", singers=singers, every=every):
        clip = datasets.load_clip(ref)
        vocals = evaluation.estimate_vocals(model, clip.mixture, clip.sample_rate, options)
        scores.append({"name": clip.name, "vocals_sdr": metrics.sdr(clip.vocals, vocals)})
    return scores


def quality(variants: list[Variant], snr: dict, args) -> dict:
    """{name: {clips, vocals_sdr (mean), cost_db (mean paired difference to the default),
    cost_se_db}} for the default, the float16 and int8 models, and every other variant whose
    output is not the default's."""
    singers = args.singers.split(",")
    scored = {}
    for variant in variants:
        same = snr.get(variant.name, 0) >= SAME_OUTPUT_SNR_DB
        if variant.name != "default" and not variant.scored and same:
            continue
        print(f"SDR: {variant.name} ...", file=sys.stderr, flush=True)
        if variant.remote is not None:
            answer = variant.remote.ask(cmd="sdr", variant=variant.name, mir1k=args.mir1k,
                                        singers=singers, every=args.every)  # fmt: skip
            scored[variant.name] = answer["clips"]
        else:
            scored[variant.name] = score_clips(variant.model, args.mir1k, singers, args.every)
    base = [clip["vocals_sdr"] for clip in scored["default"]]
    summary = {}
    for name, clips in scored.items():
        values = [clip["vocals_sdr"] for clip in clips]
        costs = [value - b for value, b in zip(values, base, strict=True)]
        summary[name] = {
            "clips": len(values),
            "vocals_sdr": statistics.fmean(values),
            "cost_db": statistics.fmean(costs),
            "cost_se_db": statistics.stdev(costs) / len(costs) ** 0.5 if len(costs) > 1 else 0.0,
            "per_clip": clips,
        }
    return summary


# ---------------------------------------------------------------------------- report
def _ratio(value: float) -> str:
    return f"{value:.2f}x"


def table(report: dict) -> list[str]:
    notes = {v["name"]: v for v in report["variants"]}
    lines = [
        "| variant | batch | median ms | p90 ms | min ms | ratio to default (median) "
        "| output SNR vs default |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for row in report["rows"]:
        note = notes[row["variant"]]
        snr = note["output_snr_db"]
        snr_text = "identical" if note["output_identical"] else f"{snr:.1f} dB"
        lines.append(
            f"| {row['variant']} | {row['batch']} | {row['median_ms']:.1f} | {row['p90_ms']:.1f} "
            f"| {row['min_ms']:.1f} | {_ratio(row['ratio_to_default'])} | {snr_text} |"
        )
    return lines


def markdown(report: dict) -> list[str]:
    """The report's body: the timing table, the variants, the quality table when scored."""
    facts = report["facts"]
    lines = [
        f"Model {Path(report['model']).name}, onnxruntime {report['onnxruntime']}. "
        f"{report['note']}",
        "",
        f"### Time per window (host path: STFT + ONNX + iSTFT), {report['rounds']} rounds, "
        "variants interleaved",
        "",
        *table(report),
        "",
        "batch 1 = a mono stream or the mid channel, batch 2 = a stereo window. Output SNR: "
        "the variant's stereo output on one noise window against the default's.",
        "",
        "### Variants",
        "",
        "| variant | onnxruntime | provider | session load ms | what |",
        "| --- | --- | --- | --- | --- |",
    ]
    for variant in report["variants"]:
        what = variant["note"] + (
            f" -- **not run**: {variant['error']}" if variant["error"] else ""
        )
        lines.append(
            f"| {variant['name']} | {variant['onnxruntime'] or '-'} | {variant['provider']} "
            f"| {1000 * variant['load_s']:.0f} | {what} |"
        )
    loads = facts["load_s"]
    lines += [
        "",
        f"NCHWc nodes in the optimised graph: default {facts['nchwc_nodes']['default']}, "
        f"NCHWc off {facts['nchwc_nodes']['NCHWc off']}. Session creation (median of "
        f"{LOAD_REPEATS}, alternating): the model at ORT_ENABLE_ALL {loads['original_all_s']:.3f} s,"
        f" the saved optimised graph {loads['saved_optimised_s']:.3f} s.",
    ]
    if report.get("other_python_error"):
        lines += ["", f"Other environment: {report['other_python_error']}"]
    if report.get("quality"):
        lines += [
            "",
            f"### Quality: vocals SDR on MIR-1K ({report['quality_clips']})",
            "",
            "| variant | clips | vocals SDR dB | cost vs default dB (mean ± s.e.) |",
            "| --- | --- | --- | --- |",
        ]
        for name, item in report["quality"].items():
            cost = (
                "-" if name == "default" else f"{item['cost_db']:+.2f} ± {item['cost_se_db']:.2f}"
            )
            lines.append(f"| {name} | {item['clips']} | {item['vocals_sdr']:.2f} | {cost} |")
        lines += ["", "The float16 and int8 models are always scored; the other variants only "
                  f"when their output differs from the default's by more than "
                  f"{SAME_OUTPUT_SNR_DB:.0f} dB SNR (otherwise: the same model, float32 "
                  "rounding)."]  # fmt: skip
    return lines


def snr_fields(snr: float | None) -> dict:
    """JSON has no infinity: an identical output is said so, with no SNR."""
    identical = snr is not None and bool(np.isinf(snr))
    return {"output_snr_db": None if identical else snr, "output_identical": identical}


def describe(variant: Variant) -> dict:
    return {
        "name": variant.name,
        "note": variant.note,
        "provider": variant.provider,
        "onnxruntime": variant.onnxruntime,
        "load_s": variant.load_s,
        "error": variant.error,
    }


# ---------------------------------------------------------------------------- main
def get_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", help="ONNX model (default: the bundled model)")
    parser.add_argument("--rounds", type=int, default=20, help="timed rounds (default 20)")
    parser.add_argument("--mir1k", metavar="DIR", help="MIR-1K folder: score the variants' SDR")
    parser.add_argument("--singers", default="abjones,amy", help="held-out MIR-1K singers")
    parser.add_argument("--every", type=int, default=6, help="every K-th clip (default 6)")
    parser.add_argument(
        "--other-python",
        metavar="PY",
        help="python of an environment with another onnxruntime wheel (onnxruntime-openvino)",
    )
    parser.add_argument(
        "--note",
        default="The machine was shared with other work during the run.",
        help="what else ran on the machine (goes into the results)",
    )
    parser.add_argument("--out", default=str(RESULTS / "providers"), help="path stem for .json/.md")
    parser.add_argument(
        "--smoke", action="store_true", help="CI: a gain model with the full contract, 2 rounds"
    )
    parser.add_argument("--worker", metavar="MODEL", help=argparse.SUPPRESS)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = get_parser().parse_args(argv)
    if args.worker:
        return worker_main(args.worker)
    import onnxruntime

    this_run = Run("bench_providers", argv)
    if args.mir1k:
        from stream_sep.errors import UserError
        from stream_sep.evaluation import datasets

        try:  # before any timing: a wrong folder or singer is said at once
            datasets.find_clips(args.mir1k, "mir1k", singers=args.singers.split(","))
        except UserError as error:
            print(f"bench_providers: {error}", file=sys.stderr)
            return 2
    with tempfile.TemporaryDirectory(prefix="bench-providers-") as temporary:
        folder = Path(temporary)
        if args.smoke:
            from benchmarks.fixtures import full_window_gain_model

            model_path, args.rounds = full_window_gain_model(folder), 2
        else:
            model_path = Path(args.model) if args.model else bundled_model_path()
        variants, facts = local_variants(model_path, folder)
        worker, other_error = None, None
        if args.other_python:
            remote, worker, other_error = remote_variants(args.other_python, model_path)
            variants += remote
        try:
            report = run(args, variants, facts, folder, model_path)
        finally:
            if worker is not None:
                worker.close()
    report.update(
        onnxruntime=onnxruntime.__version__,
        model=str(model_path),
        note=args.note,
        other_python_error=other_error,
    )
    print(this_run.write(*at_stem(args.out), report, markdown(report)), end="")
    return 0


def run(args, variants: list[Variant], facts: dict, folder: Path, model_path: Path) -> dict:
    runnable = [v for v in variants if v.error is None]
    window = runnable[0].model.contract.window_samples
    snr = output_snr(runnable, window, folder)
    times = time_round_robin(runnable, args.rounds, window)
    described = [describe(v) | snr_fields(snr.get(v.name)) for v in variants]
    report = {
        "rounds": args.rounds,
        "variants": described,
        "facts": facts,
        "rows": rows_from(runnable, times),
        "times_s": {name: {str(b): t for b, t in by.items()} for name, by in times.items()},
    }
    if args.mir1k:
        report["quality"] = quality(runnable, snr, args)
        report["quality_clips"] = (
            f"singers {args.singers}, every {args.every}th clip, engine defaults like live"
        )
    return report


if __name__ == "__main__":
    sys.exit(main())
