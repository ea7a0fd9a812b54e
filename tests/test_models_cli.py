"""``stream-sep models``: importing community MDX-Net models onto the shelf, listing,
removing, ``--model NAME``; every bad model is one line, exit status 2, nothing written."""

from __future__ import annotations

import hashlib
import json
import os
import re
from pathlib import Path

import numpy as np
import onnx
import pytest
import soundfile as sf
from onnx import TensorProto, helper, numpy_helper

from stream_sep import cli
from stream_sep.models import shelf
from stream_sep.models.families import mdx
from stream_sep.models.loading import load_model
from stream_sep.models.model_import import HASH_BYTES, model_hash
from stream_sep.models.onnx_metadata import read_metadata
from tests.helpers import noise
from tests.mdx_helpers import REAL, band_limited, mdx_model

FLAGS = ["--n-fft", "2048", "--stem", "vocals"]


@pytest.fixture
def shelf_folder(tmp_path, monkeypatch):
    folder = tmp_path / "shelf"
    monkeypatch.setenv(shelf.ENV_VAR, str(folder))
    return folder


@pytest.fixture
def community(tmp_path):
    """A community-style MDX file (no stream-sep metadata) in its own folder."""
    folder = tmp_path / "uvr"
    folder.mkdir()
    return mdx_model(folder / "UVR-MDX-NET-Test.onnx", "scale", scale=0.5)


def models_cli(capsys, *args: str) -> tuple[int, str, str]:
    code = cli.main(["models", *args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def assert_one_line_error(code: int, err: str, pattern: str) -> None:
    assert code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("stream-sep: error: "), err
    assert re.search(pattern, lines[0]), lines[0]
    assert len(lines[0]) < 400


def shelf_files(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


def uvr_table(path: Path, md5: str, **entry) -> Path:
    values = {
        "compensate": 1.035,
        "mdx_dim_f_set": 256,
        "mdx_dim_t_set": 5,
        "mdx_n_fft_scale_set": 2048,
        "primary_stem": "Instrumental",
    }
    values.update(entry)
    other = {
        "0" * 32: {
            "compensate": 1.0,
            "mdx_dim_f_set": 3072,
            "mdx_dim_t_set": 8,
            "mdx_n_fft_scale_set": 7680,
            "primary_stem": "Vocals",
        }
    }
    path.write_text(json.dumps({**other, md5: values}))
    return path


# ---------------------------------------------------------------------------- importing
def test_import_with_flags_round_trips_the_contract_and_leaves_the_file_alone(
    shelf_folder, community, capsys
):
    before = community.read_bytes(), community.stat().st_mtime_ns
    code, out, err = models_cli(
        capsys,
        "import",
        str(community),
        "--n-fft",
        "2048",
        "--stem",
        "instrumental",
        "--compensate",
        "1.02",
        "--name",
        "test-inst",
    )
    assert code == 0, err
    assert "imported" in out and "'test-inst'" in out and "instrumental" in out
    assert (community.read_bytes(), community.stat().st_mtime_ns) == before
    stored = shelf_folder / "test-inst.onnx"
    metadata = read_metadata(stored)
    assert metadata[shelf.MD5_KEY] == model_hash(community)
    assert metadata[shelf.ORIGIN_KEY] == str(community.resolve())
    model = load_model("test-inst", "cpu")  # by name, from anywhere
    assert model.contract == mdx.MdxContract(
        n_fft=2048, dim_f=256, dim_t=32, compensate=1.02, stem="instrumental"
    )
    assert model.path == stored


def test_import_by_hash_from_a_uvr_model_data_table(shelf_folder, community, tmp_path, capsys):
    table = uvr_table(tmp_path / "model_data.json", model_hash(community))
    code, out, err = models_cli(capsys, "import", str(community), "--model-data", str(table))
    assert code == 0, err
    assert "parameters from the model-data table" in out
    contract = load_model("UVR-MDX-NET-Test", "cpu").contract
    assert (contract.n_fft, contract.dim_t, contract.compensate, contract.stem) == (
        2048,
        32,
        1.035,
        "instrumental",
    )


def test_audio_separators_nested_table_is_read_too(shelf_folder, community, tmp_path, capsys):
    flat = uvr_table(tmp_path / "flat.json", model_hash(community))
    nested = tmp_path / "model-data.json"
    nested.write_text(
        json.dumps({"vr_model_data": {}, "mdx_model_data": json.loads(flat.read_text())})
    )
    code, _, err = models_cli(capsys, "import", str(community), "--model-data", str(nested))
    assert code == 0, err


def test_the_hash_is_uvrs_md5_of_the_last_10240000_bytes(tmp_path):
    big = tmp_path / "big.bin"
    data = np.random.default_rng(0).bytes(HASH_BYTES + 12345)
    big.write_bytes(data)
    assert model_hash(big) == hashlib.md5(data[-10_240_000:]).hexdigest()
    small = tmp_path / "small.bin"
    small.write_bytes(data[:1000])
    assert model_hash(small) == hashlib.md5(data[:1000]).hexdigest()


def test_agreeing_flags_and_table_are_fine_conflicting_ones_are_one_line(
    shelf_folder, community, tmp_path, capsys
):
    table = uvr_table(tmp_path / "t.json", model_hash(community))
    code, _, err = models_cli(
        capsys, "import", str(community), "--model-data", str(table), "--n-fft", "4096"
    )
    assert_one_line_error(
        code,
        err,
        r"--n-fft 4096 disagrees with the model-data table t.json \(mdx_n_fft_scale_set: 2048\)",
    )
    assert shelf_files(shelf_folder) == []
    code, out, err = models_cli(
        capsys, "import", str(community), "--model-data", str(table), "--n-fft", "2048"
    )
    assert code == 0, err
    assert "model-data table and flags" in out


def test_importing_twice_under_one_name_needs_replace(shelf_folder, community, capsys):
    assert models_cli(capsys, "import", str(community), *FLAGS)[0] == 0
    stored = (shelf_folder / "UVR-MDX-NET-Test.onnx").read_bytes()
    code, _, err = models_cli(
        capsys, "import", str(community), "--n-fft", "2048", "--stem", "instrumental"
    )
    assert_one_line_error(code, err, "already on the shelf; pass --replace")
    assert (shelf_folder / "UVR-MDX-NET-Test.onnx").read_bytes() == stored
    code, _, err = models_cli(
        capsys, "import", str(community), "--n-fft", "2048", "--stem", "instrumental", "--replace"
    )
    assert code == 0, err
    assert load_model("UVR-MDX-NET-Test", "cpu").contract.stem == "instrumental"


def test_list_shows_the_bundled_model_and_the_imported_ones(shelf_folder, community, capsys):
    code, out, _ = models_cli(capsys, "list")
    assert code == 0
    assert re.search(r"vocals-mir1k\s+tfc_tdf\s+16000 Hz\s+4.06 s", out), out
    models_cli(capsys, "import", str(community), *FLAGS, "--name", "mine")
    code, out, _ = models_cli(capsys, "list")
    row = next(line for line in out.splitlines() if line.startswith("mine "))
    assert re.search(
        r"mine\s+mdx\s+44100 Hz\s+0.72 s\s+65 Hz-5.5 kHz\s+vocals\s+0.0 MB\s+not measured\s+/", row
    ), row
    assert str(community.resolve()) in row


def test_measure_records_the_lowest_latency_in_the_list(shelf_folder, community, capsys):
    models_cli(capsys, "import", str(community), *FLAGS, "--name", "mine")
    code, out, err = models_cli(capsys, "measure", "mine", "--samplerate", "48000")
    assert code == 0, err
    latency = float(re.search(r"lowest live latency ([\d.]+) s", out).group(1))
    _, listing, _ = models_cli(capsys, "list")
    assert f"{latency:.2f} s (48000 Hz, 2 ch, cpu)" in listing


def test_remove(shelf_folder, community, capsys):
    models_cli(capsys, "import", str(community), *FLAGS, "--name", "mine")
    code, out, _ = models_cli(capsys, "remove", "mine")
    assert code == 0 and "removed 'mine'" in out
    assert shelf_files(shelf_folder) == []
    assert_one_line_error(
        *models_cli(capsys, "remove", "mine")[::2], r"no model named 'mine'.*vocals-mir1k"
    )
    assert_one_line_error(
        *models_cli(capsys, "remove", "vocals-mir1k")[::2], "bundled model: it cannot be removed"
    )


def test_separate_accepts_a_shelf_name(shelf_folder, community, tmp_path, capsys):
    models_cli(capsys, "import", str(community), *FLAGS, "--name", "mine")
    song = tmp_path / "song.wav"
    sf.write(song, noise(2, 44100)[:, :44100].T, 44100)
    code = cli.main(
        ["separate", str(song), "-o", str(tmp_path / "out"), "--model", "mine", "--quiet"]
    )
    assert code == 0, capsys.readouterr().err
    assert (tmp_path / "out" / "song" / "vocals.wav").is_file()
    code = cli.main(
        ["separate", str(song), "-o", str(tmp_path / "o2"), "--model", "nothere", "--quiet"]
    )
    assert_one_line_error(
        code, capsys.readouterr().err, "'nothere' is neither a file nor a model on the shelf"
    )


def test_a_shelf_that_cannot_be_written_is_one_line(tmp_path, community, monkeypatch, capsys):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    monkeypatch.setenv(shelf.ENV_VAR, str(blocker / "shelf"))
    code, _, err = models_cli(capsys, "import", str(community), *FLAGS)
    assert_one_line_error(code, err, r"the model shelf .* is not writable .*set STREAM_SEP_MODELS")


# ---------------------------------------------------------------------------- bad models
def _huge_initializer(path: Path) -> Path:
    """Declares a 4 TB weight kept in an external file (that is tiny)."""
    (path.parent / "weights.bin").write_bytes(b"\0" * 64)
    weight = TensorProto(name="w", data_type=TensorProto.FLOAT, dims=[10**6, 10**6])
    weight.data_location = TensorProto.EXTERNAL
    weight.external_data.add(key="location", value="weights.bin")
    return mdx_model(path, initializers=[weight])


def _external(location: str):
    def build(path: Path) -> Path:
        weight = TensorProto(name="w", data_type=TensorProto.FLOAT, dims=[4])
        weight.data_location = TensorProto.EXTERNAL
        weight.external_data.add(key="location", value=location)
        return mdx_model(path, initializers=[weight])

    return build


def _custom_domain(path: Path) -> Path:
    nodes = [helper.make_node("Separate", ["input"], ["output"], domain="com.example.uvr")]
    return mdx_model(path, nodes=nodes)


def _not_onnx(text: bytes):
    def build(path: Path) -> Path:
        path.write_bytes(text)
        return path

    return build


def _smaller_output_at_run_time(path: Path) -> Path:
    """Declares no output shape; really returns half the frequency bins."""
    starts = numpy_helper.from_array(np.array([0], np.int64), "starts")
    ends = numpy_helper.from_array(np.array([128], np.int64), "ends")
    axes = numpy_helper.from_array(np.array([2], np.int64), "axes")
    nodes = [helper.make_node("Slice", ["input", "starts", "ends", "axes"], ["output"])]
    model = mdx_model(path, nodes=nodes, initializers=[starts, ends, axes], output_shape=None)
    proto = onnx.load(model)
    proto.graph.output[0].type.tensor_type.ClearField("shape")
    onnx.save(proto, model)
    return model


BAD = {
    "rank 3": (
        lambda p: mdx_model(p, input_shape=["b", 4, 256]),
        FLAGS,
        r"rank 3 \[b, 4, 256\]; an MDX model's input is \[batch, 4, dim_f, dim_t\]",
    ),
    "2 channels": (lambda p: mdx_model(p, input_shape=["b", 2, 256, 32]), FLAGS, r"has 2 channels"),
    "dynamic dim_f": (
        lambda p: mdx_model(p, input_shape=["b", 4, "f", 32]),
        FLAGS,
        r"dynamic dim_f axis \[b, 4, f, 32\]",
    ),
    "dim_f mismatch": (
        lambda p: mdx_model(p),
        [*FLAGS, "--dim-f", "3072"],
        r"input has dim_f 256, but --dim-f says 3072",
    ),
    "dim_t mismatch": (
        lambda p: mdx_model(p),
        [*FLAGS, "--dim-t", "256"],
        r"input has dim_t 32, but --dim-t says 256",
    ),
    "output of another shape": (
        lambda p: mdx_model(p, output_shape=["b", 4, 128, 32]),
        FLAGS,
        r"output 'output' has shape \[b, 4, 128, 32\]",
    ),
    "another shape at run time": (
        _smaller_output_at_run_time,
        FLAGS,
        r"returns shape \[1, 4, 128, 32\] on a test window",
    ),
    "NaN output": (lambda p: mdx_model(p, "nan"), FLAGS, "returns NaN or Inf on a test window"),
    "input named x": (
        lambda p: mdx_model(p, input_name="x"),
        FLAGS,
        r"graph inputs are \['x'\], an MDX model has exactly one, 'input'",
    ),
    "not ONNX (text)": (
        _not_onnx(b"this is a text file, not a model\n" * 20),
        FLAGS,
        "is not an ONNX model",
    ),
    "not ONNX (random)": (
        _not_onnx(np.random.default_rng(1).bytes(4096)),
        FLAGS,
        "is not an ONNX model",
    ),
    "no flags, no table": (
        lambda p: mdx_model(p),
        [],
        r"missing --n-fft and --stem: no --model-data table was given \(MD5 [0-9a-f]{32}\)",
    ),
    "unknown stem": (
        lambda p: mdx_model(p),
        ["--n-fft", "2048", "--stem", "Drums"],
        r"primary stem 'Drums' is not supported",
    ),
    "n_fft too small for dim_f": (
        lambda p: mdx_model(p),
        ["--n-fft", "256", "--stem", "vocals"],
        r"dim_f must be in \[4, n_fft/2\+1=129\]",
    ),
    "external data ../": (
        _external("../secret.bin"),
        FLAGS,
        r"reads its data from '../secret.bin', outside the model's folder",
    ),
    "external data absolute": (
        _external("/etc/passwd"),
        FLAGS,
        r"reads its data from '/etc/passwd', outside the model's folder",
    ),
    "external data missing": (_external("gone.bin"), FLAGS, "'gone.bin', which is missing"),
    "custom-op domain": (_custom_domain, FLAGS, r"custom operator domain 'com.example.uvr'"),
    "4 TB declared weight": (
        _huge_initializer,
        FLAGS,
        r"declared tensors need 4.0 TB, more than the .* available",
    ),
    "1e9 frames declared": (
        lambda p: mdx_model(p, input_shape=["b", 4, 3072, 10**9]),
        FLAGS,
        r"declared tensors need \d+\.\d TB",
    ),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_models_are_one_line_status_2_and_nothing_is_written(
    case, shelf_folder, tmp_path, capsys, monkeypatch
):
    build, flags, pattern = BAD[case]
    folder = tmp_path / "uvr"
    folder.mkdir()
    path = build(folder / "bad.onnx")
    if case in (
        "4 TB declared weight",
        "1e9 frames declared",
        "external data ../",
        "external data absolute",
        "custom-op domain",
    ):
        # Refused before ONNX Runtime sees the file at all.
        import onnxruntime

        def no_session(*args, **kwargs):
            raise AssertionError("ONNX Runtime was asked to load an untrusted file")

        monkeypatch.setattr(onnxruntime, "InferenceSession", no_session)
    code, _, err = models_cli(capsys, "import", str(path), *flags)
    assert_one_line_error(code, err, pattern)
    assert shelf_files(shelf_folder) == [], "nothing may be written"


@pytest.mark.parametrize(
    "entry, pattern",
    [
        ({"config_yaml": "model_2_stem_full_band_8k.yaml"}, r"an MDX23C model \(config_yaml\)"),
        ({"vr_model_param": "4band_v3"}, "a VR-architecture model"),
    ],
)
def test_table_entries_of_other_architectures_are_refused(
    entry, pattern, shelf_folder, community, tmp_path, capsys
):
    table = tmp_path / "t.json"
    table.write_text(json.dumps({model_hash(community): entry}))
    code, _, err = models_cli(capsys, "import", str(community), "--model-data", str(table))
    assert_one_line_error(code, err, pattern + ": only MDX-Net ONNX models are supported")
    assert shelf_files(shelf_folder) == []


def test_a_table_that_does_not_know_the_hash_says_so(shelf_folder, community, tmp_path, capsys):
    table = uvr_table(tmp_path / "model_data.json", "f" * 32)
    code, _, err = models_cli(capsys, "import", str(community), "--model-data", str(table))
    assert_one_line_error(
        code,
        err,
        rf"missing --n-fft and --stem: model_data.json does not know this model \(MD5 {model_hash(community)}\)",
    )


def test_external_data_inside_the_folder_is_inlined_into_a_self_contained_copy(
    shelf_folder, tmp_path, capsys
):
    folder = tmp_path / "uvr"
    folder.mkdir()
    gain = numpy_helper.from_array(np.array([0.25], np.float32), "gain")
    nodes = [helper.make_node("Mul", ["input", "gain"], ["output"])]
    path = mdx_model(folder / "ext.onnx", nodes=nodes, initializers=[gain])
    proto = onnx.load(path)
    onnx.save(
        proto,
        path,
        save_as_external_data=True,
        all_tensors_to_one_file=True,
        location="ext.data",
        size_threshold=0,
    )
    assert (folder / "ext.data").is_file()
    code, _, err = models_cli(capsys, "import", str(path), *FLAGS)
    assert code == 0, err
    os.remove(folder / "ext.data")  # the shelf copy needs nothing from the user's folder
    model = load_model("ext", "cpu")
    audio = noise(2, model.contract.window_samples, seed=3, amplitude=0.1)
    expected = 0.25 * band_limited(audio, model.contract)
    np.testing.assert_allclose(model.separate_channels(audio, 2)[:, 0], expected, atol=1e-6)


def test_a_real_size_model_imports(shelf_folder, tmp_path, capsys):
    path = mdx_model(tmp_path / "Kim_Vocal_2.onnx", dim_f=REAL["dim_f"], dim_t=REAL["dim_t"])
    code, out, err = models_cli(capsys, "import", str(path), "--n-fft", "7680", "--stem", "vocals")
    assert code == 0, err
    assert "dim_f 3072 (17 Hz-17.6 kHz), dim_t 256 (5.92 s windows)" in out
