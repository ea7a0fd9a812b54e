"""Benchmark scenarios, run as ``python -m benchmarks NAME [options]`` (``--list``: all of them)
or ``python -m benchmarks.NAME``; each writes its results through :mod:`benchmarks.harness`."""
