"""Keep TensorFlow's import-time log lines (about nine on stderr) out of the user's way."""

from __future__ import annotations

import os


def quiet_tensorflow() -> None:
    """Set before TensorFlow is imported; a user's own setting wins."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    # absl's "All log messages before absl::InitializeLog()" line obeys this one
    os.environ.setdefault("GLOG_minloglevel", "3")
