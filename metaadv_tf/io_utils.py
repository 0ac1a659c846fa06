"""Atomic file writes (a reader sees the old file or the new one, never half of one) and reads."""
from __future__ import annotations

import contextlib
import json
import os
import tempfile
from typing import Any, Callable, Iterator


@contextlib.contextmanager
def atomic_path(path: str) -> Iterator[str]:
    """Yields a temporary path beside ``path``; on success it replaces ``path`` in one rename,
    with the permissions ``path`` had, or those of a new file (not mkstemp's owner-only 0600)."""
    directory = os.path.dirname(os.path.abspath(path)) or "."
    os.makedirs(directory, exist_ok=True)
    suffix = _suffix(path)
    handle, temporary = tempfile.mkstemp(dir=directory, prefix=".tmp-", suffix=suffix)
    os.close(handle)
    try:
        yield temporary
        os.chmod(temporary, _mode(path))
        os.replace(temporary, path)
    finally:
        if os.path.exists(temporary):
            os.remove(temporary)


def atomic_write_text(path: str, text: str) -> None:
    """Writes ``text`` to ``path`` atomically."""
    with atomic_path(path) as temporary:
        with open(temporary, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())


def atomic_save(path: str, save: Callable[[str], None]) -> None:
    """Calls ``save(temporary_path)`` and moves the result to ``path`` atomically."""
    with atomic_path(path) as temporary:
        save(temporary)


def read_json(path: str) -> Any | None:
    """The JSON value in ``path``; None when there is no such file."""
    if not os.path.isfile(path):
        return None
    with open(path, encoding="utf-8") as handle:
        return json.load(handle)


def _mode(path: str) -> int:
    """The permission bits of ``path`` if it exists, else of a new file under the umask."""
    if os.path.exists(path):
        return os.stat(path).st_mode & 0o7777
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


def _suffix(path: str) -> str:
    """The full multi-part suffix Keras checks, e.g. '.weights.h5' for 'a.weights.h5'."""
    name = os.path.basename(path)
    return name[name.find("."):] if "." in name else ""
