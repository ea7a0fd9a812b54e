"""Stage 2 of the export: tf2onnx on the core network, then the graph passes every model gets.

TensorFlow and tf2onnx are imported inside :func:`convert_core`.
"""

from __future__ import annotations

import logging

from export.errors import ExportFailed
from export.graph_passes import check_graph, name_graph_tensors, split_strided_means
from stream_sep.errors import first_line
from stream_sep.models.contract import ModelContract

log = logging.getLogger(__name__)

DEFAULT_OPSET = 17
# tf2onnx 1.17 writes opsets 13..18; Erf, GroupNorm's decomposition and dynamic Reshape
# need nothing newer than 13.
OPSET_RANGE = (13, 18)


def convert_core(core, contract: ModelContract, opset: int = DEFAULT_OPSET):
    """tf2onnx on the core network -> ``onnx.ModelProto`` named after the contract.

    core: keras.Model, (B, frames, n_bins, 2) -> (B, S, frames, 2 * n_bins). The batch axis
    of the graph is the dynamic dimension ``batch``; the other axes are fixed.
    """
    import tensorflow as tf
    import tf2onnx

    tf2onnx.logging.set_level(
        logging.ERROR if log.getEffectiveLevel() > logging.DEBUG else logging.INFO
    )
    signature = (
        tf.TensorSpec((None,) + contract.input_shape[1:], tf.float32, name=contract.input_name),
    )
    function = tf.function(
        lambda spectrogram: core(spectrogram, training=False), input_signature=signature
    )
    try:
        proto, _ = tf2onnx.convert.from_function(function, input_signature=signature, opset=opset)
    except Exception as error:  # tf2onnx raises bare Exception/ValueError/KeyError types
        raise ExportFailed(
            f"tf2onnx could not convert the core network: {first_line(error)}"
        ) from error
    name_graph_tensors(proto, contract)
    split_strided_means(proto)
    check_graph(proto)
    return proto
