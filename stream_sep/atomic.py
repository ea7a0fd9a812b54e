"""Files that appear whole or not at all: written under a hidden name beside the target,
then renamed onto it."""

from __future__ import annotations

import os
import secrets
from pathlib import Path


def hidden_sibling(path: str | os.PathLike) -> Path:
    """Create an empty hidden file beside ``path`` and return its path.

    ``os.open`` with mode 0o666, not ``tempfile.mkstemp``: the file gets the user's umask
    (mkstemp makes every file 0600, so a user's stems and reports would be private to them
    whatever their umask says). Keeps ``path``'s suffix so writers that look at it still do.
    """
    path = Path(path)
    while True:
        candidate = path.with_name(f".{path.stem}-{secrets.token_hex(4)}{path.suffix}")
        try:
            os.close(os.open(candidate, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
        except FileExistsError:
            continue
        return candidate
