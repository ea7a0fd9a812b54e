"""The one exception of the export stages beyond :class:`stream_sep.errors.UserError`."""


class ExportFailed(Exception):
    """The export ran but its result is not usable (conversion error, parity, NaN).

    ``to_onnx.py`` prints ``to_onnx.py: export failed: <message>`` and exits with status 1.
    """
