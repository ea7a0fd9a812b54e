"""Export a trained checkpoint to ONNX for the stream-sep host: ``python export/to_onnx.py``.

Run from the repository root; ``--help`` lists the options. The work is done by
:mod:`export.onnx_export`, which tests call in-process.
"""

import sys
from pathlib import Path

# Run as a script, Python puts export/ on sys.path; the training code needs the root.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from export.onnx_export import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
