"""stream-sep: real-time vocal separation with a fixed, reported delay."""

__version__ = "0.1.0"
