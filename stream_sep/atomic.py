"""Files that appear whole or not at all: written under a hidden name beside the target,
then renamed onto it."""

from __future__ import annotations

import contextlib
import os
import secrets
from collections.abc import Iterator
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


@contextlib.contextmanager
def write_path(path: str | os.PathLike) -> Iterator[Path]:
    """A hidden file beside ``path`` to write (:func:`hidden_sibling`), renamed onto ``path``
    when the block ends normally and removed when it raises.

    A block that removes the hidden file itself leaves ``path`` as it was (a writer that
    decided to write nothing this time). Creating the file first also proves the folder is
    writable before any slow work: ``OSError`` on entering.
    """
    path = Path(path)
    temporary = hidden_sibling(path)
    try:
        yield temporary
        if temporary.exists():
            os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)


def write_text(path: str | os.PathLike, text: str) -> None:
    """Write ``text`` to ``path`` whole or not at all (:func:`write_path`)."""
    with write_path(path) as temporary:
        temporary.write_text(text)
