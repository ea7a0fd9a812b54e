"""Separation models: the contract they carry, loading and running them (ONNX Runtime and its
providers), the shelf of installed models, importing community files, and the families."""
