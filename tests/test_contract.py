"""The model contract: metadata round trip and clear refusals of bad model files."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from stream_sep.errors import ModelError
from stream_sep.models.contract import PREFIX, ModelContract, contract_from_metadata
from stream_sep.models.loading import load_model
from tests.helpers import gain_model, small_contract


def test_metadata_round_trip():
    contract = ModelContract()
    assert contract_from_metadata(contract.to_metadata()) == contract
    assert contract.frames == 128 and contract.input_shape == (None, 128, 1024, 2)
    assert contract.output_shape == (None, 1, 128, 2048)


def test_missing_keys_are_all_named(tmp_path):
    metadata = ModelContract().to_metadata()
    del metadata[PREFIX + "n_fft"], metadata[PREFIX + "sources"]
    with pytest.raises(ModelError, match="stream_sep.n_fft, .*stream_sep.sources"):
        load_model(gain_model(tmp_path / "m.onnx", metadata=metadata))


def test_no_metadata_at_all(tmp_path):
    with pytest.raises(ModelError, match="is not a stream-sep separation model"):
        load_model(gain_model(tmp_path / "m.onnx", metadata={}))


@pytest.mark.parametrize(
    "key, value, message",
    [
        ("sample_rate", "abc", "must be an integer, got 'abc'"),
        ("sample_rate", "99999999", r"sample_rate must be in \[4000, 192000\]"),
        ("n_fft", "1000", "n_fft must be a power of two"),
        ("window_samples", "999999999", "window_samples must be in"),
        ("frames", "17", "frames=17 disagrees"),
        ("window", "hamming", "window must be 'hann_periodic'"),
        ("contract_version", "9", "contract_version 9 is not supported"),
        ("sources", "drums", "sources must include 'vocals'"),
    ],
)
def test_bad_values_are_refused(tmp_path, key, value, message):
    metadata = small_contract().to_metadata()
    metadata[PREFIX + key] = value
    with pytest.raises(ModelError, match=message):
        load_model(gain_model(tmp_path / "m.onnx", metadata=metadata))


def test_metadata_that_disagrees_with_the_graph_shape(tmp_path):
    graph_contract = small_contract(window_samples=7680)
    claimed = small_contract(window_samples=8192).to_metadata()
    path = gain_model(tmp_path / "m.onnx", contract=graph_contract, metadata=claimed)
    with pytest.raises(ModelError, match=r"has shape .* \(axis 1 is 16, not 17\)"):
        load_model(path)


def test_wrong_tensor_names(tmp_path):
    contract = small_contract(input_name="mixture")
    metadata = small_contract().to_metadata()
    with pytest.raises(ModelError, match=r"graph inputs are \['mixture'\]"):
        load_model(gain_model(tmp_path / "m.onnx", contract=contract, metadata=metadata))


def test_wrong_rank(tmp_path):
    contract = small_contract()
    x = helper.make_tensor_value_info("spectrogram", TensorProto.FLOAT, ["b", 16, 2048])
    y = helper.make_tensor_value_info("sources", TensorProto.FLOAT, ["b", 16, 2048])
    graph = helper.make_graph(
        [helper.make_node("Identity", ["spectrogram"], ["sources"])], "g", [x], [y]
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    for key, value in contract.to_metadata().items():
        model.metadata_props.add(key=key, value=value)
    onnx.save(model, tmp_path / "m.onnx")
    with pytest.raises(ModelError, match="has rank 3"):
        load_model(tmp_path / "m.onnx")


def test_not_onnx_and_missing_files(tmp_path):
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(np.random.default_rng(0).bytes(4096))
    with pytest.raises(ModelError, match="is not a loadable ONNX model"):
        load_model(junk)
    with pytest.raises(ModelError, match="does not exist"):
        load_model(tmp_path / "absent.onnx")
    (tmp_path / "empty.onnx").write_bytes(b"")
    with pytest.raises(ModelError, match="is empty"):
        load_model(tmp_path / "empty.onnx")
