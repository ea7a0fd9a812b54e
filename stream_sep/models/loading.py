"""Loading a separation model: a file, a name on the shelf or the bundled model, checked
(size, contract, family, graph) before it runs; see :mod:`stream_sep.models.runtime` for how
it runs.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np

from stream_sep.errors import ModelError, UserError, first_line
from stream_sep.models import families, providers
from stream_sep.models.bundled import bundled_model_path
from stream_sep.models.contract import PREFIX
from stream_sep.models.runtime import Runner, SeparationModel, check_graph, import_onnxruntime

log = logging.getLogger(__name__)

_MAX_MODEL_BYTES = 2 * 1024**3


def read_model_file(path: str | os.PathLike) -> bytes:
    """Read a model file, refusing missing, empty and oversized files with one clear line."""
    path = Path(path)
    if not path.exists():
        raise ModelError(f"model file {str(path)!r} does not exist")
    if not path.is_file():
        raise ModelError(f"model path {str(path)!r} is not a file")
    size = path.stat().st_size
    if size == 0:
        raise ModelError(f"model file {str(path)!r} is empty")
    if size > _MAX_MODEL_BYTES:
        raise ModelError(f"model file {str(path)!r} is {size} bytes, over the 2 GiB limit")
    return path.read_bytes()


def resolve_model_path(path_or_name: str | os.PathLike | None) -> Path:
    """The file of a model given as a path, a name on the shelf (``stream-sep models
    list``, the bundled model included) or None (the bundled model).

    An existing path wins; a bare name (no folder, no ``.onnx``) that is not a file is looked
    up on the shelf (:class:`ModelError` naming the shelf's models if it is not there);
    anything else is returned as given, for :func:`read_model_file` to refuse.
    """
    if path_or_name is None:
        return bundled_model_path()
    path = Path(path_or_name)
    if path.exists() or len(path.parts) != 1 or path.suffix.lower() == ".onnx":
        return path
    from stream_sep.models import shelf

    found = shelf.resolve(str(path_or_name))
    if found is None:
        raise shelf.describe_missing(str(path_or_name))
    return found


def load_model(path: str | os.PathLike | None = None, provider: str = "auto") -> SeparationModel:
    """Load and validate a separation model of any family (:mod:`stream_sep.models.families`);
    ``path`` is a file, a name on the shelf, or None for the bundled model.

    ``provider`` is ``auto`` (TensorRT, CUDA, then CPU: the first that really starts),
    ``tensorrt``, ``cuda`` or ``cpu``; an explicit one that cannot run here raises
    :class:`~stream_sep.models.providers.ProviderUnavailable` (a UserError).
    """
    path = resolve_model_path(path)
    data = read_model_file(path)
    import_onnxruntime()
    try:
        session, choice = providers.open_session(data, provider, path.parent)
    except UserError:
        raise
    except Exception as error:  # onnxruntime raises its own Fail/InvalidGraph/... types
        raise ModelError(f"{path.name} is not a loadable ONNX model: {first_line(error)}") from None
    metadata = session.get_modelmeta().custom_metadata_map
    if not any(key.startswith(PREFIX) for key in metadata):
        raise ModelError(
            f"{path.name} is not a stream-sep separation model: its metadata has no "
            f"stream-sep contract (a community MDX-Net model is imported first: "
            f"stream-sep models import {path.name})"
        )
    family = families.family_module(families.family_name(metadata, path.name))
    contract = family.contract_from_metadata(metadata, origin=path.name)
    check_graph(session, contract, path.name)
    runner = Runner(data, session, choice, contract, model_folder=path.parent)
    log.info("provider %s: %s", runner.provider, choice.reason)
    if runner.device == "cpu" and runner.io_dtype == np.float16:
        log.warning(
            "%s is a float16 export: on the CPU it runs slower than the float32 one", path.name
        )
    return family.make_model(runner, contract, path, choice.reason)
