"""Checkpoint -> ONNX export for the stream-sep host (see export/to_onnx.py)."""
